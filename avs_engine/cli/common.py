"""Pieces shared by the commands: runner construction, model description, error lines."""

from __future__ import annotations

from pathlib import Path

import click

from ..backends.base import create_runner
from ..errors import BackendError


def echo_err(msg: str) -> None:
    """One line on stderr: 'error: ...'."""
    click.echo(f"error: {msg.splitlines()[0] if msg else 'unknown error'}", err=True)


def default_weights() -> Path:
    """The bundled demo model (trained on generated videos), used when no --weights is given."""
    from ..models import DEMO_WEIGHTS

    if not DEMO_WEIGHTS.is_file():
        raise BackendError(f"no --weights given and the bundled demo model is missing ({DEMO_WEIGHTS}); reinstall avs-engine or pass --weights FILE")
    return DEMO_WEIGHTS


def _device_id(device: str) -> int:
    """'cuda' -> 0, 'cuda:1' -> 1."""
    if ":" in device:
        try:
            return int(device.split(":", 1)[1])
        except ValueError:
            raise BackendError(f"bad --device '{device}' (expected cpu, cuda or cuda:N)") from None
    return 0


def make_runner(backend: str, *, weights=None, config=None, vggish=None, engine_dir=None, device="cpu",
                dtype="float32", fused=False, precision=None, cuda_graph=False):
    """The runner the command line asks for (not yet activated)."""
    if backend == "torch":
        if weights is None:
            if config is not None:
                raise BackendError(f"--config {config} given without --weights: pass the checkpoint to run with it")
            weights = default_weights()
        return create_runner("torch", weights=weights, config=config, vggish=vggish, device=device, dtype=dtype, fused=fused)
    if engine_dir is None:
        raise BackendError(f"--backend {backend} needs --engine-dir DIR (made by avs-export)")
    if backend == "onnxruntime":
        providers = ["cpu"] if device == "cpu" else ["cuda"]
        return create_runner("onnxruntime", engine_dir=engine_dir, providers=providers, precision=precision,
                             device_id=_device_id(device))
    return create_runner("tensorrt", engine_dir=engine_dir, device_id=_device_id(device), cuda_graph=cuda_graph, fused=fused)


def model_description(runner, weights) -> dict:
    cfg = runner.config
    d = {"backend": runner.name, "runner": runner.description, "preset": cfg.name}
    if weights is not None:
        d["weights"] = str(weights)
        from ..artifacts.graph_manifest import sha256_file

        d["weights_sha256"] = sha256_file(weights)
    engine_dir = getattr(runner, "engine_dir", None)
    if engine_dir is not None:
        d["engine_dir"] = str(engine_dir)
    from ..models import DEMO_WEIGHTS

    bundled = weights is not None and Path(weights).resolve() == DEMO_WEIGHTS
    d["bundled_demo"] = bundled
    where = " - the bundled demo model (trained on generated videos; pass --weights for your own)" if bundled else (f" from {weights}" if weights else "")
    d["summary"] = f"{cfg.name} ({runner.description}){where}"
    return d
