"""Export the four graphs (docs/graphs.md) to ONNX (FP32, FP16, INT8) with a manifest.

One entry point, :func:`export_onnx`; ``avs-export onnx`` is a thin shell over it.
Graph input/output names and symbolic shapes come from :mod:`avs_engine.artifacts.spec`;
the clip length ``T`` is dynamic in every graph (traced with ``T = 2`` so that
nothing specialises to 1). Graphs whose weights pass ``EXTERNAL_DATA_BYTES``
(ViT-L/H encoders) keep them in a ``.onnx.data`` file next to the graph.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import onnx
import torch
from torch.export import Dim

from .. import __version__
from ..errors import ConfigError
from ..reference.model import STBAVA
from ..artifacts.spec import STAGE_ORDER, STAGES, StageSpec, dims_for
from .fp16 import FLOAT32_ISLANDS, convert_fp16
from .graph_passes import split_long_reductions
from ..artifacts.graph_manifest import GraphEntry, Manifest
from .graph_entries import external_data_files, graph_entry, int8_entries
from .wrappers import graph_modules

DEFAULT_OPSET = 20
MIN_OPSET = 18  # the dynamo exporter's floor
MAX_OPSET = 23  # newest checked here (ONNX Runtime CPU runs it; 23 turns SDPA into one Attention node)
EXAMPLE_T = 2  # trace length: not 1, or the exporter may specialise T to 1
MAX_T = 64
EXTERNAL_DATA_BYTES = 1 << 30  # protobuf caps a file at 2 GB; stay well clear
PRECISION_CHOICES = {"fp32": ("fp32",), "fp16": ("fp16",), "int8": ("int8",), "both": ("fp32", "fp16")}

Progress = Callable[[str], None]


@dataclass
class ExportResult:
    out_dir: Path
    manifest: Manifest


def example_inputs(stage: StageSpec, config, T: int = EXAMPLE_T, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float32 inputs with the stage's declared shapes for clip length ``T``."""
    g = torch.Generator().manual_seed(seed)
    dims = dims_for(config, T)
    return {t.name: torch.randn(t.concrete(dims), generator=g) for t in stage.inputs}


def dynamic_shapes(stage: StageSpec) -> dict[str, dict[int, Dim]]:
    """``T`` (every input's axis 0) as one shared ``torch.export.Dim``; all else static."""
    T = Dim("T", min=1, max=MAX_T)
    return {t.name: {i: T for i, d in enumerate(t.shape) if d == "T"} for t in stage.inputs}


@contextlib.contextmanager
def _quiet():
    """The exporter's chatter (constant-folding notes, deprecation warnings) off the user's terminal."""
    log = logging.getLogger("onnxscript")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)


def _initializer_bytes(model: onnx.ModelProto) -> int:
    return sum(len(t.raw_data) or t.ByteSize() for t in model.graph.initializer)


def _clear(path: Path) -> None:
    """Remove a previous export's graph and its data files."""
    for old in path.parent.glob(path.name + "*"):
        old.unlink()


def optimize_graph(model, config) -> None:
    """The exporter's own optimisation (constant folding, then onnxscript's fusions), in place,
    with folding limits raised to the positional encoding's size ``C*G*G``.

    The random-Fourier encoding depends on no input, but at 64x64 tokens its
    Sin/Cos inputs exceed onnxscript's default folding limits (8192 / 262144
    elements): the graphs would recompute it on every run, in float16 in the
    FP16 graphs. Folded, it is one float32 constant like any weight.
    """
    import onnxscript.optimizer
    import onnxscript.rewriter.onnx_fusions

    limit = max(config.fusion.dim * config.grid * config.grid, 512 * 512)
    with _quiet():
        onnxscript.optimizer.optimize_ir(model, input_size_limit=limit, output_size_limit=limit)
        onnxscript.rewriter.onnx_fusions.fuse(model)


def export_graph(
    module: torch.nn.Module,
    stage: StageSpec,
    config,
    path: Path,
    *,
    opset: int = DEFAULT_OPSET,
    external_data: bool | None = None,
) -> list[Path]:
    """Export one wrapper to ``path`` (FP32). Returns the files written (graph first).

    ``external_data``: None decides by size (``EXTERNAL_DATA_BYTES``).
    """
    args = example_inputs(stage, config)
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(
            module,
            tuple(args.values()),
            dynamo=True,
            dynamic_shapes=dynamic_shapes(stage),
            input_names=list(stage.input_names),
            output_names=list(stage.output_names),
            opset_version=opset,
            optimize=False,  # optimised below, with constant folding sized for the positional encoding
            verbose=False,
            report=False,
            verify=False,
        )
        optimize_graph(program.model, config)
        split_long_reductions(program.model)
    weight_bytes = sum(
        v.const_value.nbytes for v in program.model.graph.initializers.values() if v.const_value is not None
    )
    use_external = weight_bytes > EXTERNAL_DATA_BYTES if external_data is None else external_data
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear(path)
    with _quiet():
        program.save(str(path), external_data=use_external)
    onnx.checker.check_model(str(path))  # a path: works for graphs over 2 GB
    return [path, *external_data_files(path)]


def save_graph(model: onnx.ModelProto, path: Path, *, external_data: bool | None = None) -> list[Path]:
    """Save an ONNX model (external data by size, or as told). Returns the files written."""
    use_external = _initializer_bytes(model) > EXTERNAL_DATA_BYTES if external_data is None else external_data
    path.parent.mkdir(parents=True, exist_ok=True)
    _clear(path)
    if use_external:
        onnx.save_model(
            model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
            location=path.name + ".data", size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)  # full: types must infer consistently
    return [path, *external_data_files(path)]


def tool_versions() -> dict[str, str]:
    import onnxscript

    versions = {"avs_engine": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "onnx": onnx.__version__, "onnxscript": onnxscript.__version__}
    try:
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return versions


def precision_set(precision: str | Iterable[str]) -> tuple[str, ...]:
    """``"both"``, ``"fp32,int8"``, ``("fp16", "int8")``... -> the graph sets to write, in fp32/fp16/int8 order."""
    parts = precision.split(",") if isinstance(precision, str) else list(precision)
    wanted: set[str] = set()
    for p in (x.strip() for x in parts):
        if p not in PRECISION_CHOICES:
            raise ConfigError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, got '{p}'")
        wanted |= set(PRECISION_CHOICES[p])
    return tuple(p for p in ("fp32", "fp16", "int8") if p in wanted)


def check_options(precision: str | Iterable[str], opset: int) -> None:
    """Raise :class:`ConfigError` for an unknown precision or an opset outside what we export and test."""
    precision_set(precision)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(f"opset must be between {MIN_OPSET} and {MAX_OPSET}, got {opset}")


def export_onnx(
    model: STBAVA,
    out_dir: str | Path,
    *,
    precision: str | Iterable[str] = "both",
    opset: int = DEFAULT_OPSET,
    checkpoint: dict[str, Any] | None = None,
    external_data: bool | None = None,
    progress: Progress = lambda msg: None,
    threads: int | None = None,
    int8_calibration: Sequence[Mapping[str, Any]] = (),
    int8_check: Callable | None = None,
) -> ExportResult:
    """Write the four graphs (``precision``: fp32, fp16, int8, both, or a comma-separated mix) and
    ``manifest.json`` to ``out_dir``.

    ``model``: the reference model with its weights (put in eval mode);
    ``checkpoint``: what the weights came from (file names and sha256), for the manifest;
    ``external_data``: None decides per graph by size; ``progress`` receives one line per step.
    ``threads``: ONNX Runtime's intra-op threads for the INT8 work (default: its own).
    ``int8_calibration``, ``int8_check``: for the int8 set, the calibration clips and the check each
    INT8 graph must pass against FP32 (the checks package's ``int8_inputs`` makes both;
    :mod:`avs_engine.export.int8_export`). Parity against PyTorch is measured after the export
    (``verify_export`` in the checks package, run by the CLI).
    """
    check_options(precision, opset)
    precisions = precision_set(precision)
    if "int8" in precisions and int8_check is None:
        raise ConfigError("int8 graphs need the check against FP32 they must pass (int8_check; "
                          "int8_inputs of the checks package makes it)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    config = model.config
    modules = graph_modules(model)
    graphs: dict[str, dict[str, GraphEntry]] = {p: {} for p in precisions}
    fp32_files: dict[str, list[Path]] = {}

    n = len(STAGE_ORDER)
    for i, stage in enumerate(STAGE_ORDER, 1):
        t0 = time.perf_counter()
        fp32_path = out / "fp32" / f"{stage}.onnx"
        files = export_graph(modules[stage], STAGES[stage], config, fp32_path, opset=opset, external_data=external_data)
        msg = f"[{i}/{n}] {stage}: fp32 {_size(files)} in {time.perf_counter() - t0:.1f} s"
        if "fp16" in precisions:
            t1 = time.perf_counter()
            fp16_files = save_graph(convert_fp16(fp32_path), out / "fp16" / f"{stage}.onnx", external_data=external_data)
            graphs["fp16"][stage] = graph_entry(out, stage, "fp16", fp16_files, FLOAT32_ISLANDS)
            msg += f", fp16 {_size(fp16_files)} in {time.perf_counter() - t1:.1f} s"
        if "fp32" in precisions:
            graphs["fp32"][stage] = graph_entry(out, stage, "fp32", files)
        fp32_files[stage] = files
        progress(msg)
    if "int8" in precisions:
        from .int8_export import build_int8

        int8_files, records = build_int8(out, {s: f[0] for s, f in fp32_files.items()}, config,
                                         calibration=list(int8_calibration), check=int8_check, threads=threads,
                                         progress=progress)
        graphs["int8"] = int8_entries(out, int8_files, records)
    if "fp32" not in precisions:
        # FP32 graphs that the int8 set runs (stages that stayed fp32) stay on disk, listed under int8 only.
        needed = {g.onnx.file for g in graphs.get("int8", {}).values()}
        for files in fp32_files.values():
            if files[0].relative_to(out).as_posix() not in needed:
                for f in files:
                    f.unlink()
        with contextlib.suppress(OSError):
            (out / "fp32").rmdir()

    manifest = Manifest(
        config=config.to_dict(),
        checkpoint=checkpoint or {},
        opset=opset,
        graphs=graphs,
        tools=tool_versions(),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    manifest.write(out)
    progress(f"manifest: {manifest.path}")
    return ExportResult(out_dir=out, manifest=manifest)


def load_for_export(config, weights, vggish=None, *, allow_missing_fusion: bool = False, seed: int | None = None):
    """The float32 reference model (SAM's own attention code: the graphs are exported from it and
    checked against it) and a description of its weights for the manifest (file names, sha256)."""
    from ..errors import CheckpointError
    from ..reference.checkpoint import load_model
    from ..artifacts.graph_manifest import sha256_file

    if seed is not None and weights is not None:
        raise ConfigError("give either --weights or --seed, not both")
    if seed is None and weights is None:
        raise ConfigError("no weights given: --weights FILE (or --seed N for random weights)")
    for path in (weights, vggish):
        if path is not None and not Path(path).is_file():
            raise CheckpointError(f"{path}: checkpoint file not found")
    model, report = load_model(weights, config, vggish, seed=seed, allow_missing_fusion=allow_missing_fusion)
    model.eval()
    if seed is not None:
        return model, {"random_seed": seed, "summary": f"random weights, seed {seed}"}
    files = [{"role": "weights", "file": Path(weights).name, "sha256": sha256_file(weights)}]
    if vggish is not None:
        files.append({"role": "vggish", "file": Path(vggish).name, "sha256": sha256_file(vggish)})
    layout = report.layout if report is not None else "unknown"
    return model, {"layout": layout, "files": files, "summary": f"{layout} weights from {Path(weights).name}"}


def _size(files: list[Path]) -> str:
    b = sum(f.stat().st_size for f in files)
    return f"{b / 1e6:.1f} MB" + (f" ({len(files) - 1} data file)" if len(files) > 1 else "")
