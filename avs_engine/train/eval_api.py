"""What avs-eval does, as one library call: build the runner, open the split, score it."""

from __future__ import annotations

import time
from pathlib import Path

from ..backends.base import create_runner
from ..data import open_split
from ..errors import BackendError
from ..models import DEMO_WEIGHTS
from .evaluate import evaluate_split, runner_predictor


def _torch_model(weights, config, vggish, fusion_variant):
    """For the torch backend: the model as its weights describe it (a bundle carries its fusion
    variant in its config), or as ``fusion_variant`` overrides."""
    from ..reference.build import build_model
    from ..reference.checkpoint import is_bundle, load_bundle, load_checkpoint
    from .variants import apply_variant

    if is_bundle(weights):
        model, _ = load_bundle(weights)
    else:
        if config is None:
            raise BackendError(f"{weights}: not a bundle, so the model config is needed (--config PRESET|FILE)")
        model = build_model(config, device="meta")
        load_checkpoint(model, weights, vggish=vggish)
    if fusion_variant:
        apply_variant(model, fusion_variant)
    return model, model.config.fusion.variant


def run_eval(*, weights=None, config=None, vggish=None, backend="torch", engine_dir=None, device="cpu", dtype="float32",
             generated=0, data_root=None, log_mel="wav", subset="s4", split="test", cache_dir=None, limit=None, fusion_variant=None,
             threads=0, progress=True, runner_options=None) -> dict:
    """``runner_options``: more keyword arguments for the onnxruntime/tensorrt runner (providers, precision, threads...)."""
    if backend == "torch":
        if threads:
            import torch

            torch.set_num_threads(threads)
        weights = Path(weights) if weights is not None else DEMO_WEIGHTS
        if not weights.is_file():
            raise BackendError(f"{weights}: weights not found")
        model, _ = _torch_model(weights, config, vggish, fusion_variant)
        runner = create_runner("torch", model=model, device=device, dtype=dtype)
    else:
        if engine_dir is None:
            raise BackendError(f"--backend {backend} needs --engine-dir DIR (made by avs-export)")
        if fusion_variant not in (None, "full"):
            raise BackendError("--fusion-variant applies to the torch backend only (exported graphs fix the fusion)")
        runner = create_runner(backend, engine_dir=engine_dir, **(runner_options or {}))
    runner.activate()
    cfg = runner.config
    variant = cfg.fusion.variant
    data = open_split(split if not generated else "test", cfg.encoder.img_size, generated=generated, root=data_root,
                      subset=subset, cache_dir=cache_dir, progress=progress, log_mel=log_mel)
    t0 = time.perf_counter()
    res = evaluate_split(data, runner_predictor(runner), progress=progress, limit=limit)
    elapsed = time.perf_counter() - t0
    source = (f"{generated} generated test clips (held-out seed range)" if generated
              else f"AVSBench {subset} {split} at {data_root}")
    summary = f"{cfg.name} ({runner.description}" + (f", fusion {variant}" if variant else "") + ")"
    if weights is not None and backend == "torch":
        summary += f" from {weights}"
    return {
        "model": {"summary": summary, "preset": cfg.name, "backend": backend, "weights": str(weights) if weights else None,
                  "fusion_variant": variant, "config": cfg.to_dict()},
        "data": source,
        "metrics": {"all": res["all"], "burst": res["burst"]},
        "per_video": res["per_video"],
        "elapsed_s": round(elapsed, 2),
        "definition": "AVSBench (docs/metrics.md): IoU of sigmoid>0.5 (empty GT: background fraction), F beta^2=0.3 max over 255 thresholds, 224x224",
    }
