"""How far the TensorRT engines are from the ONNX graphs (``avs-export check``).

Polygraphy runs each graph on ONNX Runtime (CPU or CUDA provider) and its
engine on TensorRT with the same inputs; every output passes when every
element is within ``atol + rtol * |ONNX Runtime's value|`` of ONNX Runtime's
(checked here with numpy, not by Polygraphy's compare functions, whose
``mean`` statistic fails only when the mean absolute error exceeds atol *and*
the mean relative error exceeds rtol).
Inputs: a seeded random clip (image ~ N(0,1), log-mel ~ N(-1,2)); each stage
gets the ONNX Runtime chain's own intermediates, so errors do not compound
from stage to stage. The whole chain is then run by the tensorrt backend
(device-chained, as ``avs-run`` runs it) and its masks (logit > 0 at the
output size) compared with ONNX Runtime's by per-frame IoU.

Where TensorRT (or a GPU) is missing the report says so and the ONNX Runtime
side still runs: every graph loads and gives finite outputs of the declared
shapes. Such a report is *incomplete*, never a pass.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from ..errors import BackendError, ConfigError
from ..artifacts.spec import STAGE_ORDER, STAGES, dims_for
from .compare import mask_iou, random_clip, rel_l2  # noqa: F401 (random_clip re-exported)
from ..artifacts.engine_manifest import EngineManifest, read_engine_manifest
from ..artifacts.graph_manifest import Manifest, read_manifest

Progress = Callable[[str], None]

# (rtol, atol, criterion) per output, by the precision of the engines, against the FP32 graphs.
# FP32 engines may use TF32 tensor cores (TensorRT's default), hence 1e-3-level errors.
# Criterion "elementwise": every element within atol + rtol * |reference| (np.isclose's rule).
# These values were chosen before any engine ran on a GPU: the report gives each output's worst
# element as a multiple of its tolerance, to set them from a real run.
ELEMENTWISE = "elementwise"
TOLERANCES: dict[str, dict[str, tuple[float, float, str]]] = {
    "fp32": {name: (1e-2, 1e-3, ELEMENTWISE) for name in ("a128", "enc", "dense", "sparse", "logits")},
    "fp16": {
        "a128": (2e-2, 1e-2, ELEMENTWISE),
        "enc": (5e-2, 2e-2, ELEMENTWISE),
        "dense": (5e-2, 2e-2, ELEMENTWISE),
        "sparse": (5e-2, 2e-2, ELEMENTWISE),
        "logits": (5e-2, 5e-2, ELEMENTWISE),
    },
}
DEFAULT_MIN_IOU = 0.9
OUTPUT_NAMES = tuple(t.name for s in STAGE_ORDER for t in STAGES[s].outputs)


def parse_tolerances(values: tuple[str, ...] | list[str], what: str = "tolerance") -> dict[str, float]:
    """``["0.05", "enc:0.1"]`` -> ``{"*": 0.05, "enc": 0.1}`` (one value for all outputs, or per output;
    ``NAME:X`` as Polygraphy writes it, or the older ``NAME=X``)."""
    out: dict[str, float] = {}
    for v in values:
        name, _, num = v.replace("=", ":").rpartition(":")
        name = name or "*"
        if name != "*" and name not in OUTPUT_NAMES:
            raise ConfigError(f"--{what}: unknown output '{name}' (outputs: {', '.join(OUTPUT_NAMES)})")
        try:
            x = float(num)
        except ValueError:
            raise ConfigError(f"--{what}: '{v}' is not NAME:NUMBER or NUMBER") from None
        if not x >= 0:
            raise ConfigError(f"--{what}: '{v}' must be >= 0")
        out[name] = x
    return out


def tolerances_for(precision: str, rtol: Mapping[str, float] | None = None, atol: Mapping[str, float] | None = None) -> dict[str, tuple[float, float, str]]:
    """Per-output (rtol, atol, statistic): the defaults for ``precision``, overridden by ``rtol``/``atol``
    (key ``"*"``: every output)."""
    base = dict(TOLERANCES["fp32" if precision == "fp32" else "fp16"])
    rtol, atol = rtol or {}, atol or {}
    for name, (r, a, stat) in base.items():
        base[name] = (rtol.get(name, rtol.get("*", r)), atol.get(name, atol.get("*", a)), stat)
    return base


# -- the report --------------------------------------------------------------------------------------


@dataclass
class OutputCheck:
    stage: str
    output: str
    shape: list[int]
    finite: bool
    rel_l2: float | None = None  # TensorRT vs ONNX Runtime; None when TensorRT did not run
    max_abs: float | None = None
    mean_abs: float | None = None
    rtol: float | None = None
    atol: float | None = None
    stat: str | None = None  # the criterion: "elementwise"
    worst: float | None = None  # max over elements of |d| / (atol + rtol |ref|): <= 1 passes
    outside: int | None = None  # elements outside atol + rtol |ref|
    passed: bool | None = None  # every element within atol + rtol |ref|, and all finite


@dataclass
class CheckReport:
    onnx_dir: str
    onnx_precision: str  # the graphs ONNX Runtime ran
    provider: str
    T: int
    engine_dir: str | None = None
    engine_precision: str | None = None
    tensorrt: str | None = None  # version that ran, or None
    skipped: str | None = None  # why the TensorRT side did not run
    outputs: list[OutputCheck] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    chain_iou: list[float] | None = None
    min_iou: float = DEFAULT_MIN_IOU

    @property
    def complete(self) -> bool:
        return self.skipped is None

    def failures(self) -> list[str]:
        out = [f"{o.stage}.{o.output} has non-finite values (ONNX Runtime)" for o in self.outputs if not o.finite]
        out += [f"{o.stage}.{o.output} ({o.outside} elements outside atol + rtol|ref|, worst at {o.worst:.3g}x; "
                f"rel L2 {o.rel_l2:.2e}, max |d| {o.max_abs:.3g})" for o in self.outputs if o.passed is False]
        if self.chain_iou is not None and min(self.chain_iou) < self.min_iou:
            out.append(f"chain mask IoU {min(self.chain_iou):.4f} < {self.min_iou}")
        return out

    @property
    def ok(self) -> bool:
        return self.complete and not self.failures()

    def lines(self) -> list[str]:
        head = f"ONNX Runtime ({self.provider}, {self.onnx_precision} graphs from {self.onnx_dir}) vs "
        head += (f"TensorRT {self.tensorrt} ({self.engine_precision} engines from {self.engine_dir})" if self.complete
                 else f"TensorRT: not run ({self.skipped})")
        lines = [head + f", T={self.T}"]
        for o in self.outputs:
            where = f"  {o.stage:<13} {o.output:<7} {str(o.shape):<20}"
            if o.passed is None:
                lines.append(f"{where} ONNX Runtime {'finite' if o.finite else 'NON-FINITE'}")
            else:
                lines.append(
                    f"{where} rel L2 {o.rel_l2:.2e}  max |d| {o.max_abs:.3g}  mean |d| {o.mean_abs:.3g}  "
                    f"worst element {o.worst:.3g}x of atol {o.atol:g} + rtol {o.rtol:g}|ref| {'ok' if o.passed else 'FAIL'}"
                )
        if self.chain_iou is not None:
            iou = min(self.chain_iou)
            lines.append(f"  chain         masks   per-frame IoU min {iou:.4f} mean {float(np.mean(self.chain_iou)):.4f} "
                         f"(need >= {self.min_iou}) {'ok' if iou >= self.min_iou else 'FAIL'}")
        elif not self.complete:
            lines.append("  chain         masks   not compared (TensorRT did not run)")
        verdict = "PASS" if self.ok else ("INCOMPLETE: only the ONNX Runtime side ran" if not self.complete and not self.failures() else "FAIL")
        lines.append(verdict)
        return lines

    def to_dict(self) -> dict:
        return asdict(self)


# -- running -------------------------------------------------------------------------------------------


def within_tolerance(got: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> tuple[bool, float, int]:
    """Every element of ``got`` within ``atol + rtol * |ref|`` of ``ref`` (a non-finite one is outside).
    Returns (passed, worst |d| / (atol + rtol |ref|) over the elements, how many are outside)."""
    got64, ref64 = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    d = np.abs(got64 - ref64)
    allowed = atol + rtol * np.abs(ref64)
    n_bad = int((~(d <= allowed)).sum())  # NaN compares False: outside
    if d.size == 0:
        return True, 0.0, 0
    if not np.isfinite(d).all():
        return False, float("inf"), n_bad
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d == 0, 0.0, d / allowed)  # allowed == 0 < d: inf
    return n_bad == 0, float(ratio.max()), n_bad


def _polygraphy():
    try:
        from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
        from polygraphy.comparator import Comparator
        from polygraphy.logger import G_LOGGER
    except ImportError as e:
        raise BackendError(f"avs-export check needs Polygraphy and ONNX Runtime ({e.name} is missing): pip install polygraphy onnxruntime") from None
    G_LOGGER.module_severity = G_LOGGER.CRITICAL  # Polygraphy's own per-run report off: ours says what matters
    return OnnxrtRunner, SessionFromOnnx, Comparator


class TensorRTSide:
    """What runs the engines: Polygraphy's ``TrtRunner`` per graph, the tensorrt backend for the chain."""

    def __init__(self, device: int = 0) -> None:
        self.device = device
        self.version: str | None = None

    def unavailable(self, engines: EngineManifest, T: int) -> str | None:
        """Why the engines cannot run here (TensorRT, GPU, version/GPU/T mismatch), or None."""
        from ..gpu import cuda_memory as cm
        from ..artifacts.engine_manifest import RuntimeInfo, check_runtime
        from ..gpu.tensorrt_api import import_tensorrt

        try:
            trt = import_tensorrt()
            cm.use_device(self.device)
            name, cc = cm.device_info(self.device)
            check_runtime(engines, RuntimeInfo(trt.__version__, name, cc), T)
        except BackendError as e:
            return str(e)
        self.version = trt.__version__
        return None

    def stage_runner(self, engines: EngineManifest, stage: str):
        """A Polygraphy runner of the stage's engine."""
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        return TrtRunner(EngineFromBytes(engines.engine_path(stage).read_bytes()), name="tensorrt")

    def chain_runner(self, engines: EngineManifest):
        """An avs-engine runner (not yet active) of the whole chain."""
        from ..backends.tensorrt_backend import TensorRTRunner

        return TensorRTRunner(engines.root, device_id=self.device)


def run_check(
    onnx_dir: str | Path | None = None,
    engine_dir: str | Path | None = None,
    *,
    T: int | None = None,
    reference: str = "fp32",
    provider: str = "cpu",
    rtol: Mapping[str, float] | None = None,
    atol: Mapping[str, float] | None = None,
    min_iou: float = DEFAULT_MIN_IOU,
    seed: int = 0,
    device: int = 0,
    progress: Progress = lambda msg: None,
    engine_side: TensorRTSide | None = None,
) -> CheckReport:
    """Compare the engines in ``engine_dir`` with the graphs in ``onnx_dir`` (see the module doc).

    ``onnx_dir``: default the folder ``engines.json`` names; ``engine_dir``: default
    ``onnx_dir/tensorrt``. ``T``: clip length (default the engines' opt T, else 2).
    ``reference``: ``fp32`` (the FP32 graphs, when exported) or ``same`` (the graphs the
    engines were built from). ``provider``: ``cpu`` or ``cuda`` for ONNX Runtime.
    ``engine_side``: what runs the engines (default :class:`TensorRTSide`; tests pass a stand-in).
    """
    if reference not in ("fp32", "same"):
        raise ConfigError(f"reference must be fp32 or same, got '{reference}'")
    if provider not in ("cpu", "cuda"):
        raise ConfigError(f"provider must be cpu or cuda, got '{provider}'")
    if onnx_dir is None and engine_dir is None:
        raise ConfigError("give the ONNX folder (--onnx-dir) or the engine folder (--engine-dir)")
    engines = None
    try:
        engines = read_engine_manifest(engine_dir if engine_dir is not None else onnx_dir)
    except BackendError:
        if engine_dir is not None:
            raise
    if onnx_dir is None:
        onnx_dir = engines.onnx["dir"]
    onnx: Manifest = read_manifest(onnx_dir)
    config = onnx.model_config()
    if engines is not None and engines.config != onnx.config:
        raise BackendError(f"{engines.path}: the engines were built for another model config than {onnx.path}; rebuild: {engines.rebuild_hint()}")
    built_from = engines.onnx.get("precision") if engines is not None else None
    precision = "fp32" if reference == "fp32" and "fp32" in onnx.precisions else (built_from or onnx.precisions[0])
    T = int(T if T is not None else (engines.T.opt if engines is not None else 2))
    if T < 1:
        raise ConfigError(f"T must be >= 1, got {T}")
    OnnxrtRunner, SessionFromOnnx, Comparator = _polygraphy()
    side = engine_side or TensorRTSide(device)
    skipped = "no engines.json found" if engines is None else side.unavailable(engines, T)
    engine_runs = skipped is None

    report = CheckReport(
        onnx_dir=str(onnx_dir), onnx_precision=precision, provider=provider, T=T,
        engine_dir=str(engines.root) if engines is not None else None,
        engine_precision=engines.precision if engines is not None else None,
        tensorrt=side.version if engine_runs else None, skipped=skipped, min_iou=min_iou,
    )
    tols = tolerances_for(engines.precision if engines is not None else "fp16", rtol, atol)
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if provider == "cuda" else ["CPUExecutionProvider"]
    dims = dims_for(config, T)
    clip = random_clip(config, T, seed)
    values: dict[str, np.ndarray] = dict(clip)  # the ONNX Runtime chain's tensors, by name
    for stage in STAGE_ORDER:
        spec = STAGES[stage]
        feeds = {t.name: values[t.name] for t in spec.inputs}
        # ONNX Runtime last: results[-1] is the reference
        runners = [side.stage_runner(engines, stage)] if engine_runs else []
        runners.append(OnnxrtRunner(SessionFromOnnx(str(onnx.graph_path(precision, stage)), providers=providers), name="onnxruntime"))
        t0 = time.perf_counter()
        try:
            results = Comparator.run(runners, data_loader=[feeds])
        except Exception as e:  # a runner failing to load or run: name the stage and the first line
            raise BackendError(f"{stage}: running the graph/engine failed ({_first_line(e)})") from None
        report.seconds[stage] = round(time.perf_counter() - t0, 3)
        ort_out = results[-1][1][0]  # the ONNX Runtime runner, iteration 0
        for t in spec.outputs:
            ref = np.asarray(ort_out[t.name], np.float32)
            want = t.concrete(dims)
            if tuple(ref.shape) != want:
                raise BackendError(f"{onnx.graph_path(precision, stage)}: output '{t.name}' has shape {list(ref.shape)}, expected {list(want)}")
            values[t.name] = ref
            o = OutputCheck(stage, t.name, list(ref.shape), bool(np.isfinite(ref).all()))
            if engine_runs:
                got = np.asarray(results[0][1][0][t.name], np.float32)
                d = np.abs(got.astype(np.float64) - ref)
                o.rel_l2, o.max_abs, o.mean_abs = rel_l2(got, ref), float(d.max()), float(d.mean())
                o.rtol, o.atol, o.stat = tols[t.name]
                ok, o.worst, o.outside = within_tolerance(got, ref, o.rtol, o.atol)
                o.passed = ok and bool(np.isfinite(got).all())
            report.outputs.append(o)
        progress(f"{stage}: {report.seconds[stage]:.2f} s")

    if engine_runs:
        from ..io.postprocess import logits_to_masks

        with side.chain_runner(engines) as runner:
            logits = runner.run_clip(clip["image"], clip["log_mel"])
        size = (config.output_size, config.output_size)
        report.chain_iou = [float(x) for x in mask_iou(logits_to_masks(logits, size), logits_to_masks(values["logits"], size))]
    return report


def _first_line(x) -> str:
    s = str(x).strip()
    return s.splitlines()[0] if s else type(x).__name__
