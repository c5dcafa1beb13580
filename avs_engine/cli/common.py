"""Pieces shared by the commands: runner construction, model description, error lines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from ..backends.base import create_runner
from ..errors import BackendError
from .options import TORCH_DTYPE, device_index


def echo_err(msg: str) -> None:
    """One line on stderr: 'error: ...'."""
    click.echo(f"error: {msg.splitlines()[0] if msg else 'unknown error'}", err=True)


def default_weights() -> Path:
    """The bundled demo model (trained on generated videos), used when no --weights is given."""
    from ..models import DEMO_WEIGHTS

    if not DEMO_WEIGHTS.is_file():
        raise BackendError(f"no --weights given and the bundled demo model is missing ({DEMO_WEIGHTS}); reinstall avs-engine or pass --weights FILE")
    return DEMO_WEIGHTS




@dataclass
class ModelChoice:
    """Which backend runs which model, as the options ask (:func:`choose_model`)."""

    backend: str
    why: str  # how the backend was chosen, for messages: "--backend onnxruntime", "the manifest.json in DIR", ...
    weights: Path | None = None
    config: str | None = None
    engine_dir: Path | None = None
    bundled: bool = False  # the bundled demo model (no model option given)
    engine_precision: str | None = None  # tensorrt: what the engines compute in (engines.json)


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def engine_dir_backend(engine_dir: Path) -> tuple[str, str | None]:
    """The backend a graph/engine folder is for, from its manifest: ``manifest.json`` (avs-export onnx)
    -> onnxruntime; ``engines.json`` (avs-export build; here or in ``DIR/tensorrt``) -> tensorrt.
    Returns (backend, the engines' precision or None)."""
    from ..artifacts import engine_manifest, graph_manifest

    root = Path(engine_dir)
    if not root.is_dir():
        raise BackendError(f"--engine-dir {root}: folder not found")
    if (root / graph_manifest.MANIFEST_NAME).is_file():
        graph_manifest.read_manifest(root, check_files=False)
        return "onnxruntime", None
    if (root / engine_manifest.MANIFEST_NAME).is_file() or (root / engine_manifest.DEFAULT_SUBDIR / engine_manifest.MANIFEST_NAME).is_file():
        m = engine_manifest.read_engine_manifest(root, check_files=False)
        return "tensorrt", m.precision
    raise BackendError(f"--engine-dir {root}: no {graph_manifest.MANIFEST_NAME} (ONNX graphs, from avs-export onnx) "
                       f"nor {engine_manifest.MANIFEST_NAME} (TensorRT engines, from avs-export build) here")


def choose_model(*, backend: str | None, weights=None, config=None, engine_dir=None) -> ModelChoice:
    """The backend and model the options name.

    - ``--engine-dir DIR``: the backend its manifest names (``--backend`` may be left out);
    - ``--weights``/``--config``: the torch backend (the reference model);
    - none of them: the bundled demo model, its ONNX graphs on ONNX Runtime
      (on torch with ``--backend torch``, or when onnxruntime is not installed).
    """
    from ..models import DEMO_GRAPHS

    if engine_dir is not None:
        engine_dir = Path(engine_dir)
        for opt, value in (("--weights", weights), ("--config", config)):
            if value is not None:
                raise BackendError(f"{opt} and --engine-dir both name a model: the graphs or engines in {engine_dir} carry their own "
                                   f"weights and config; give {opt} (torch backend) or --engine-dir, not both")
        if backend == "torch":
            raise BackendError(f"--engine-dir {engine_dir} needs the onnxruntime or tensorrt backend; the torch backend runs --weights")
        kind, precision = engine_dir_backend(engine_dir)
        if backend == "tensorrt" and kind == "onnxruntime":
            from ..artifacts import engine_manifest

            try:  # an ONNX folder whose tensorrt/ holds engines built from it
                kind, precision = "tensorrt", engine_manifest.read_engine_manifest(engine_dir, check_files=False).precision
            except BackendError:
                raise BackendError(f"--backend tensorrt: {engine_dir} holds ONNX graphs (manifest.json) and no engines.json; "
                                   f"build engines with avs-export build --onnx-dir {engine_dir}, or leave --backend out "
                                   "to run the graphs on onnxruntime") from None
        elif backend is not None and backend != kind:
            raise BackendError(f"--backend {backend}: {engine_dir} holds TensorRT engines (engines.json), which run on "
                               "the tensorrt backend; leave --backend out or give --backend tensorrt")
        why = f"--backend {backend}" if backend else f"implied by the {'engines.json' if kind == 'tensorrt' else 'manifest.json'} in {engine_dir}"
        return ModelChoice(kind, why, engine_dir=engine_dir, engine_precision=precision)
    if weights is not None or config is not None:
        if backend not in (None, "torch"):
            raise BackendError(f"--backend {backend} needs --engine-dir DIR (graphs from avs-export onnx, engines from "
                               "avs-export build); --weights/--config run on the torch backend")
        if weights is None:
            raise BackendError(f"--config {config} given without --weights: pass the checkpoint to run with it")
        return ModelChoice("torch", "--backend torch" if backend else "the torch backend runs --weights", weights=Path(weights), config=config)
    # no model option: the bundled demo model
    if backend == "tensorrt":
        raise BackendError("--backend tensorrt needs --engine-dir DIR (engines from avs-export build); the bundled demo "
                           "model ships ONNX graphs only")
    if backend is None:
        backend = "onnxruntime" if _installed("onnxruntime") or not _installed("torch") else "torch"
        why = f"the bundled demo model's {'ONNX graphs' if backend == 'onnxruntime' else 'weights (onnxruntime is not installed)'}"
    else:
        why = f"--backend {backend}"
    if backend == "onnxruntime":
        if not (DEMO_GRAPHS / "manifest.json").is_file():
            raise BackendError(f"no model option given and the bundled demo model's graphs are missing ({DEMO_GRAPHS}); "
                               "reinstall avs-engine or pass --engine-dir DIR")
        return ModelChoice("onnxruntime", why, engine_dir=DEMO_GRAPHS, bundled=True)
    return ModelChoice("torch", why, weights=default_weights(), bundled=True)


def refuse_inapplicable(choice: ModelChoice, *, precision: str | None = None, fused: bool = False, cuda_graph: bool = False,
                        vggish=None, threads: int | None = None, device: str | None = None,
                        fusion_variant: str | None = None, global_attention_precision: str | None = None,
                        tf32: bool = False, compile_blocks: bool = False) -> None:
    """One :class:`BackendError` line for the first option that does not apply to the chosen backend.

    ``device``: only when given on the command line."""
    b = choice.backend
    where = f"this run uses the {b} backend ({choice.why})"
    explicit = choice.why.startswith("--backend")
    hint = "; add --backend torch to run the bundled demo model on torch" if choice.bundled and b != "torch" and not explicit else ""
    if fused and b != "torch":
        extra = " (the exported graphs already contain its exact-algebra forms)" if b == "onnxruntime" else " (the tensorrt backend has no fused path yet)"
        raise BackendError(f"--fused needs the torch backend{extra}; {where}{hint}")
    if global_attention_precision is not None and not (fused and b == "torch"):
        raise BackendError("--global-attention-precision sets the precision of the fused CUDA kernels' global attention: "
                           f"it needs --fused on the torch backend; {where}")
    if tf32 and b != "torch":
        raise BackendError(f"--tf32 sets how the torch backend multiplies in float32 on CUDA; {where}")
    if compile_blocks and b != "torch":
        raise BackendError(f"--compile applies torch.compile to the torch backend's encoder (exported graphs are compiled by "
                           f"their runtime); {where}{hint}")
    if cuda_graph and b != "tensorrt":
        raise BackendError(f"--cuda-graph needs the tensorrt backend (it replays the TensorRT engines as one CUDA graph); {where}")
    if precision == "int8" and b != "onnxruntime":
        raise BackendError(f"--precision int8 needs the onnxruntime backend on the CPU (INT8 ONNX graphs from avs-export onnx "
                           f"--precision int8, run with --engine-dir DIR); {where}")
    if precision == "bf16" and b != "torch":
        raise BackendError(f"--precision bf16 needs the torch backend (ONNX graphs and TensorRT engines are fp32 or fp16); {where}{hint}")
    if precision is not None and b == "tensorrt" and choice.engine_precision and precision != choice.engine_precision:
        raise BackendError(f"--precision {precision}: the engines in {choice.engine_dir} compute in {choice.engine_precision} "
                           f"(rebuild them with avs-export build --precision {precision}, or leave --precision out)")
    if vggish is not None and b != "torch":
        raise BackendError(f"--vggish needs the torch backend (the exported graphs carry their audio weights); {where}")
    if threads is not None and b == "tensorrt":
        raise BackendError(f"--threads sets torch's and ONNX Runtime's CPU threads; {where}, which computes on the GPU")
    if device == "cpu" and b == "tensorrt":
        raise BackendError(f"--device cpu: {where}, which runs on a GPU (--device cuda or cuda:N)")
    if fusion_variant not in (None, "full") and b != "torch":
        raise BackendError(f"--fusion-variant needs the torch backend (exported graphs fix the fusion); {where}{hint}")


def runner_options(choice: ModelChoice, *, device: str | None = None, precision: str | None = None, fused: bool = False,
                   cuda_graph: bool = False, global_attention_precision: str | None = None, tf32: bool = False,
                   compile_blocks: bool = False) -> dict:
    """The keyword arguments of ``create_runner(choice.backend, ...)`` besides the model. ``device`` None: cpu
    (tensorrt: cuda). ``precision`` None: the backend's default (torch fp32; onnxruntime fp32 on CPU, fp16 on
    a GPU; tensorrt what the engines were built in)."""
    if choice.backend == "torch":
        kw = {"device": device or "cpu", "dtype": TORCH_DTYPE[precision or "fp32"], "fused": fused}
        if global_attention_precision is not None:
            kw["global_attention_dtype"] = TORCH_DTYPE[global_attention_precision]
        if tf32:
            kw["tf32"] = True
        if compile_blocks:
            kw["compile"] = True
        return kw
    if choice.backend == "onnxruntime":
        device = device or "cpu"
        return {"providers": ["cpu"] if device == "cpu" else ["cuda"], "precision": precision, "device_id": device_index(device)}
    return {"device_id": device_index(device or "cuda"), "cuda_graph": cuda_graph, "fused": fused}


def set_threads(backend: str, threads: int | None) -> dict:
    """``--threads`` as a runner option (torch and onnxruntime; each sets it when it activates)."""
    if not threads:
        return {}
    return {"threads": threads} if backend in ("torch", "onnxruntime") else {}


def make_runner(choice: ModelChoice, *, vggish=None, device: str | None = None, precision: str | None = None,
                fused: bool = False, cuda_graph: bool = False, threads: int | None = None,
                global_attention_precision: str | None = None, tf32: bool = False, compile_blocks: bool = False):
    """The runner for ``choice`` (not yet activated); see :func:`runner_options`."""
    kw = runner_options(choice, device=device, precision=precision, fused=fused, cuda_graph=cuda_graph,
                        global_attention_precision=global_attention_precision, tf32=tf32, compile_blocks=compile_blocks)
    kw.update(set_threads(choice.backend, threads))
    if choice.backend == "torch":
        return create_runner("torch", weights=choice.weights, config=choice.config, vggish=vggish, **kw)
    return create_runner(choice.backend, engine_dir=choice.engine_dir, **kw)


def model_description(runner, weights, bundled: bool = False) -> dict:
    cfg = runner.config
    d = {"backend": runner.name, "runner": runner.description, "preset": cfg.name}
    if getattr(runner, "stage_precision", None):
        d["compute_precision"] = dict(runner.stage_precision)
    if weights is not None:
        d["weights"] = str(weights)
        from ..artifacts.graph_manifest import sha256_file

        d["weights_sha256"] = sha256_file(weights)
    engine_dir = getattr(runner, "engine_dir", None)
    if engine_dir is not None:
        d["engine_dir"] = str(engine_dir)
        checkpoint = getattr(getattr(runner, "manifest", None), "checkpoint", None)
        if isinstance(checkpoint, dict) and checkpoint:
            d["checkpoint"] = checkpoint  # what the graphs were exported from (file names and sha256)
    from ..models import DEMO_WEIGHTS

    bundled = bundled or (weights is not None and Path(weights).resolve() == DEMO_WEIGHTS)
    d["bundled_demo"] = bundled
    where = (" - the bundled demo model (trained on generated videos; pass --weights or --engine-dir for your own)" if bundled
             else (f" from {weights}" if weights else f" from {engine_dir}" if engine_dir is not None else ""))
    d["summary"] = f"{cfg.name} ({runner.description}){where}"
    return d


_CONTROL = {i: f"\\x{i:02x}" for i in range(32)} | {0x7F: "\\x7f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


def printable(text: str) -> str:
    """``text`` with control characters (a newline in a file name...) escaped, so that it stays on one line."""
    return str(text).translate(_CONTROL)


def quote_path(path) -> str:
    """A path for an error line: as is, or repr-quoted when it holds control characters."""
    s = str(path)
    return repr(s) if printable(s) != s else s


def error_line(path, e: BaseException) -> str:
    """``<file>: <message>`` on one line, for any exception raised while processing ``path``.

    The project's errors already start with the file; others get it in front, with
    their type when the message alone would not say what happened."""
    from ..errors import AvsError

    raw = str(path)
    msg = str(e).strip()
    if not isinstance(e, (AvsError, OSError)) or not msg:
        msg = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    shown = quote_path(path)
    if raw and msg.startswith(raw):
        msg = msg[len(raw):].lstrip(": ").lstrip()
    if raw and raw != shown:
        msg = msg.replace(raw, shown)
    first = (msg.splitlines() or [""])[0].strip()
    return f"{shown}: {printable(first) or type(e).__name__}"
