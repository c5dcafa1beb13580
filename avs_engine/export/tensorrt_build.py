"""ONNX graphs -> TensorRT engines (``avs-export build``), one engine per graph.

Two layers:

- **Decisions, plain Python** (tested without TensorRT): which graphs and which
  network/builder flags for a precision and a TensorRT version
  (:func:`plan_build`), the optimisation profile of each graph
  (:func:`avs_engine.artifacts.profiles.profile_shapes`), which engines can be
  kept from a previous build (:func:`reusable`), parser errors as one line per
  node (:func:`parser_errors`), progress lines (:class:`BuildProgress`).
- **The calls into TensorRT** (:func:`build_engine`), kept thin and written
  against the Python API of TensorRT 10.x and 11.x; ``docs/tensorrt.md`` lists
  every call and the documentation it was checked against.

Precision routes:

- ``fp16`` (default, the only FP16 route on TensorRT 11): the FP16 ONNX graphs
  (float16 with float32 islands, made by ``avs-export onnx --precision fp16``),
  built as a strongly typed network: ``STRONGLY_TYPED`` on TensorRT 10, implicit
  on 11 (where every network is strongly typed and the flag is deprecated).
- ``fp32``: the FP32 graphs, strongly typed: an FP32 engine.
- ``fp16-weak`` (TensorRT 10 only): the FP32 graphs with ``BuilderFlag.FP16``
  and the float32 islands' layers pinned to float32
  (``OBEY_PRECISION_CONSTRAINTS``). TensorRT 11 removed these APIs.
"""

from __future__ import annotations

import datetime as _dt
import platform
import re
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..errors import BackendError, ConfigError
from ..atomic import atomic_target
from ..gpu.tensorrt_api import TRT_INSTALL, first_line as _first_line, import_tensorrt, make_logger
from ..artifacts.spec import STAGE_ORDER, STAGES
from ..artifacts.engine_manifest import DEFAULT_SUBDIR, EngineEntry, EngineManifest, onnx_identity, read_engine_manifest
from ..artifacts.graph_manifest import read_manifest, sha256_file
from ..artifacts.profiles import TRange, profile_shapes

PRECISIONS = ("fp16", "fp32", "fp16-weak")
MIN_MAJOR, MAX_MAJOR = 10, 11
DEFAULT_WORKSPACE_GB = 8.0
TIMING_CACHE_NAME = "timing.cache"
# TensorRT layer types of the float32 islands of fp16.FLOAT32_ISLANDS (LayerNormalization ->
# NORMALIZATION, Softmax -> SOFTMAX, ReduceMean/ReduceSum/ReduceL2 -> REDUCE): pinned to
# float32 on the weak-typed route so that it keeps the islands the FP16 ONNX keeps. The parser
# builds ReduceL2 as three layers (an elementwise x*x, a REDUCE sum, a UNARY sqrt):
# pin_float32_layers pins the square and the sqrt around a reduction too.
ISLAND_LAYER_TYPES = ("NORMALIZATION", "SOFTMAX", "REDUCE")

Progress = Callable[[str], None]


# -- TensorRT itself ---------------------------------------------------------------------------------


def parse_version(version: str) -> tuple[int, ...]:
    """``"10.13.0.35"`` -> ``(10, 13, 0, 35)`` (non-numeric parts stop the tuple)."""
    out = []
    for part in str(version).split("."):
        digits = re.match(r"\d+", part)
        if not digits:
            break
        out.append(int(digits.group()))
        if digits.end() < len(part):  # "0b1": a pre-release tag ends the numbers
            break
    if not out:
        raise BackendError(f"cannot read the TensorRT version '{version}'")
    return tuple(out)


# -- decisions (plain Python) ------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildPlan:
    """What one build does, decided from the request and the TensorRT version."""

    precision: str  # what was asked: fp16 | fp32 | fp16-weak
    onnx_precision: str  # which exported graphs to parse: fp16 | fp32
    engine_precision: str  # what the engines compute in: fp16 | fp32
    route: str  # strongly-typed | weakly-typed-fp16
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag members to set
    builder_flags: tuple[str, ...]  # BuilderFlag members to set
    pin_float32: bool  # pin the islands' layers to float32 (weak route)


def plan_build(precision: str, trt_version: str, exported: list[str] | tuple[str, ...], onnx_dir: str | Path = "ONNX_DIR") -> BuildPlan:
    """The graphs and flags for ``precision`` on TensorRT ``trt_version``; one-line errors otherwise.

    ``exported``: the precisions the ONNX folder holds (its manifest's ``precisions``).
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    v = parse_version(trt_version)
    if not MIN_MAJOR <= v[0] <= MAX_MAJOR:
        raise BackendError(
            f"TensorRT {trt_version} is not supported: avs-engine builds with TensorRT {MIN_MAJOR}.x or {MAX_MAJOR}.x ({TRT_INSTALL})"
        )
    if precision == "fp16-weak":
        if v[0] >= 11:
            raise BackendError(
                f"--precision fp16-weak needs TensorRT 10: TensorRT {trt_version} builds only strongly typed networks; "
                f"use --precision fp16 with FP16 graphs (avs-export onnx --precision fp16 --out {onnx_dir})"
            )
        _need(exported, "fp32", onnx_dir, precision)
        return BuildPlan(precision, "fp32", "fp16", "weakly-typed-fp16", (), ("FP16", "OBEY_PRECISION_CONSTRAINTS"), True)
    _need(exported, precision, onnx_dir, precision, weak_ok=(precision == "fp16" and v[0] == 10 and "fp32" in exported))
    # 10.x: opt in to strong typing (weak typing is deprecated since 10.12); 11.x: always strongly typed,
    # the flag is deprecated and ignored, so none is passed.
    flags = ("STRONGLY_TYPED",) if v[0] == 10 else ()
    return BuildPlan(precision, precision, precision, "strongly-typed", flags, (), False)


def _need(exported, onnx_precision: str, onnx_dir, asked: str, weak_ok: bool = False) -> None:
    if onnx_precision not in exported:
        alt = " (or --precision fp16-weak, which builds FP16 from the fp32 graphs on TensorRT 10)" if weak_ok else ""
        raise BackendError(
            f"{onnx_dir}: no {onnx_precision} graphs for --precision {asked} (exported: {', '.join(exported) or 'none'}); "
            f"re-export with avs-export onnx --precision {onnx_precision} --out {onnx_dir}{alt}"
        )


def network_flags_value(trt, plan: BuildPlan) -> int:
    """The ``create_network`` flags bitmask for ``plan``."""
    value = 0
    for name in plan.network_flags:
        value |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    return value


def reusable(old: EngineManifest | None, stage: str, graph_sha: str, plan: BuildPlan, trt_version: str,
             gpu: tuple[str, str], t_range: TRange, workspace: int) -> bool:
    """Whether the engine of ``stage`` in ``old`` is what this build would make (same graph, TensorRT,
    GPU, route, T range and workspace) and its file is intact."""
    if old is None or stage not in old.engines:
        return False
    e = old.engines[stage]
    same = (
        e.onnx_sha256 == graph_sha
        and old.tensorrt == trt_version
        and (old.gpu.get("name"), old.gpu.get("compute_capability")) == gpu
        and (old.route, old.precision) == (plan.route, plan.engine_precision)
        and old.t_range == t_range.as_list()
        and old.build.get("workspace_bytes") == workspace
    )
    if not same:
        return False
    p = old.engine_path(stage)
    return p.is_file() and p.stat().st_size == e.bytes and sha256_file(p) == e.sha256


def parser_errors(parser) -> list[str]:
    """One line per ONNX parser error: ``node 12 'name' (Op): CODE: description``.

    ``node_name``/``node_operator`` exist on TensorRT 10+; older bindings give only the index.
    """
    lines = []
    for i in range(int(parser.num_errors)):
        err = parser.get_error(i)
        where = f"node {err.node()}"
        name = _call(err, "node_name")
        op = _call(err, "node_operator")
        if name:
            where += f" '{name}'"
        if op:
            where += f" ({op})"
        lines.append(f"{where}: {err.code()}: {_first_line(err.desc())}")
    return lines


def _call(obj, attr: str) -> str:
    fn = getattr(obj, attr, None)
    try:
        return str(fn()) if callable(fn) else ""
    except Exception:  # an optional detail: never let it hide the error itself
        return ""


class BuildProgress:
    """Turns TensorRT's progress callbacks into a few lines: top-level phases when they start
    and finish, and their step counts at most every ``interval`` seconds. Thread-safe (TensorRT
    calls a progress monitor from several threads)."""

    def __init__(self, report: Progress, stage: str, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.report, self.stage, self.interval, self.clock = report, stage, interval, clock
        self._lock = threading.Lock()
        self._phases: dict[str, tuple[str | None, int, float]] = {}  # name -> (parent, steps, start)
        self._last = -float("inf")

    def phase_start(self, phase: str, parent: str | None, steps: int) -> None:
        with self._lock:
            self._phases[phase] = (parent, int(steps), self.clock())
            if parent is None:
                self.report(f"  {self.stage}: {phase} ({steps} step{'s' if steps != 1 else ''})")

    def step_complete(self, phase: str, step: int) -> bool:
        with self._lock:
            parent, steps, _ = self._phases.get(phase, (None, 0, 0.0))
            now = self.clock()
            if parent is None and now - self._last >= self.interval:
                self._last = now
                self.report(f"  {self.stage}: {phase} {step + 1}/{steps}")
        return True  # never cancel

    def phase_finish(self, phase: str) -> None:
        with self._lock:
            parent, _, start = self._phases.pop(phase, (None, 0, self.clock()))
            if parent is None:
                self.report(f"  {self.stage}: {phase} done in {self.clock() - start:.1f} s")


class Heartbeat:
    """Where the bindings have no IProgressMonitor: "still building" every ``interval`` seconds."""

    def __init__(self, report: Progress, stage: str, interval: float = 30.0) -> None:
        self.report, self.stage, self.interval = report, stage, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.wait(self.interval):
            self.report(f"  {self.stage}: still building ({time.monotonic() - t0:.0f} s)")

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


# -- the calls into TensorRT ---------------------------------------------------------------------------


def make_progress_monitor(trt, progress: BuildProgress):
    """A ``trt.IProgressMonitor`` forwarding to ``progress``; None where the bindings lack it."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class _Monitor(base):
        def __init__(self) -> None:
            base.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps):
            progress.phase_start(phase_name, parent_phase, num_steps)

        def step_complete(self, phase_name, step):
            return progress.step_complete(phase_name, step)

        def phase_finish(self, phase_name):
            progress.phase_finish(phase_name)

    return _Monitor()


def pin_float32_layers(trt, network, layer_types=ISLAND_LAYER_TYPES) -> int:
    """Weak route: run the islands' layers in float32 (precision and output types). Returns the count.

    Besides the layers of ``layer_types``, the ones the ONNX parser adds around a reduction:
    ReduceL2 arrives as an elementwise square (the same tensor twice), a REDUCE sum and a UNARY
    sqrt, and pinning only the sum would leave the square in FP16 (it overflows from |x| > 256)
    and the sqrt too. So the square feeding a REDUCE layer and the UNARY layers it feeds are
    pinned with it (looking through SHUFFLE layers, which the parser may put between)."""
    wanted = {getattr(trt.LayerType, t) for t in layer_types}
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    producer, consumers = {}, {}
    for layer in layers:
        for j in range(layer.num_outputs):
            producer[layer.get_output(j).name] = layer
        for j in range(layer.num_inputs):
            t = layer.get_input(j)
            if t is not None:
                consumers.setdefault(t.name, []).append(layer)

    def upstream(layer):
        t = layer.get_input(0) if layer.num_inputs else None
        p = producer.get(t.name) if t is not None else None
        while p is not None and p.type == trt.LayerType.SHUFFLE and p.num_inputs:
            t = p.get_input(0)
            p = producer.get(t.name) if t is not None else None
        return p

    def downstream(layer):
        out, todo = [], [c for j in range(layer.num_outputs) for c in consumers.get(layer.get_output(j).name, [])]
        while todo:
            c = todo.pop()
            if c.type == trt.LayerType.SHUFFLE:
                todo += [d for j in range(c.num_outputs) for d in consumers.get(c.get_output(j).name, [])]
            else:
                out.append(c)
        return out

    def is_square(layer) -> bool:
        if layer is None or layer.type != trt.LayerType.ELEMENTWISE or layer.num_inputs != 2:
            return False
        a, b = layer.get_input(0), layer.get_input(1)
        return a is not None and b is not None and a.name == b.name

    pin = {id(layer): layer for layer in layers if layer.type in wanted}
    reduce_type = getattr(trt.LayerType, "REDUCE", None)
    for layer in list(pin.values()):
        if layer.type != reduce_type:
            continue
        up = upstream(layer)
        if is_square(up):
            pin[id(up)] = up
        for down in downstream(layer):
            if down.type == getattr(trt.LayerType, "UNARY", None):
                pin[id(down)] = down
    floats = {trt.float32, trt.float16}
    for layer in layers:  # network order
        if id(layer) not in pin:
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype in floats:
                layer.set_output_type(j, trt.float32)
    return len(pin)


def attach_timing_cache(builder_config, blob: bytes, notes: list[str]) -> None:
    """Give the build the timing cache serialised in ``blob`` (empty: a new cache).

    TensorRT answers a blob it cannot read (truncated, corrupt, another format) with None from
    ``create_timing_cache`` (logging an error) and refuses one from another GPU or TensorRT in
    ``set_timing_cache``: either way the build starts from an empty cache, with a note."""
    cache = None
    if blob:
        try:
            cache = builder_config.create_timing_cache(blob)
        except Exception:  # bindings that raise instead of returning None
            cache = None
        if cache is None:
            notes.append("timing cache unreadable (corrupt or truncated?): started an empty one")
        elif not builder_config.set_timing_cache(cache, False):  # False: refuse a cache from another GPU/TensorRT
            notes.append("timing cache from another GPU or TensorRT ignored")
            cache = None
        else:
            return
    empty = builder_config.create_timing_cache(b"")
    if empty is None or not builder_config.set_timing_cache(empty, False):
        raise BackendError("TensorRT could not create an empty timing cache (see TensorRT's messages above)")


@dataclass
class BuiltEngine:
    stage: str
    engine: bytes
    timing_cache: bytes
    profile: dict[str, list[list[int]]]
    seconds: float
    notes: list[str]


def build_engine(trt, logger, onnx_path: Path, stage: str, config, plan: BuildPlan, t_range: TRange,
                 workspace: int, timing_cache: bytes, progress: Progress) -> BuiltEngine:
    """Parse ``onnx_path`` and build the engine of ``stage``. Every TensorRT call of the build is here."""
    t0 = time.monotonic()
    notes: list[str] = []
    try:
        builder = trt.Builder(logger)
    except Exception as e:  # pybind: "factory function returned nullptr" without a usable GPU
        raise BackendError(f"TensorRT cannot create a builder here (no usable GPU or driver?): {_first_line(e)}") from None
    network = builder.create_network(network_flags_value(trt, plan))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # resolves external data next to the file
        errors = parser_errors(parser) or ["no error recorded by the parser"]
        more = f" [+{len(errors) - 1} more: {'; '.join(errors[1:4])}{' ...' if len(errors) > 4 else ''}]" if len(errors) > 1 else ""
        raise BackendError(f"{onnx_path}: TensorRT {trt.__version__} cannot parse this graph: {errors[0]}{more}")
    got = [network.get_input(i).name for i in range(network.num_inputs)]
    want = list(STAGES[stage].input_names)
    if sorted(got) != sorted(want):
        raise BackendError(f"{onnx_path}: graph inputs {got} are not those of stage '{stage}' {want}; re-export the graphs")

    builder_config = builder.create_builder_config()
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    for flag in plan.builder_flags:
        builder_config.set_flag(getattr(trt.BuilderFlag, flag))
    if plan.pin_float32:
        notes.append(f"{pin_float32_layers(trt, network)} layers pinned to float32")

    shapes = profile_shapes(stage, config, t_range)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    if builder_config.add_optimization_profile(profile) < 0:
        raise BackendError(f"{onnx_path}: TensorRT rejected the optimisation profile {shapes}")

    attach_timing_cache(builder_config, timing_cache, notes)

    monitor = make_progress_monitor(trt, BuildProgress(progress, stage))
    if monitor is not None:
        builder_config.progress_monitor = monitor  # kept alive by `monitor` until the build returns
        serialized = builder.build_serialized_network(network, builder_config)
    else:
        with Heartbeat(progress, stage):
            serialized = builder.build_serialized_network(network, builder_config)
    if serialized is None:
        why = _first_line(logger.errors[-1]) if getattr(logger, "errors", None) else "see TensorRT's messages above"
        raise BackendError(f"TensorRT could not build the {stage} engine from {onnx_path}: {why}")
    new_cache = bytes(builder_config.get_timing_cache().serialize())
    return BuiltEngine(
        stage=stage,
        engine=bytes(serialized),
        timing_cache=new_cache,
        profile={k: [list(s) for s in v] for k, v in shapes.items()},
        seconds=time.monotonic() - t0,
        notes=notes,
    )


# -- the whole build -----------------------------------------------------------------------------------


def default_out_dir(onnx_dir: str | Path) -> Path:
    return Path(onnx_dir) / DEFAULT_SUBDIR


def build_engines(
    onnx_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    precision: str = "fp16",
    t_range: TRange = TRange(),
    workspace_gb: float = DEFAULT_WORKSPACE_GB,
    timing_cache: str | Path | None = None,
    force: bool = False,
    device: int = 0,
    verbose: bool = False,
    progress: Progress = lambda msg: None,
    trt=None,
    gpu: tuple[str, str] | None = None,
) -> EngineManifest:
    """Build the four engines from the ONNX folder ``onnx_dir`` into ``out_dir`` (default
    ``onnx_dir/tensorrt``) and write ``engines.json`` there. Returns the manifest.

    ``t_range``: the clip lengths the engines accept; ``workspace_gb``: TensorRT's workspace
    limit; ``timing_cache``: the cache file (default ``out_dir/timing.cache``), read before and
    written after every engine; ``force``: rebuild engines that a previous build left intact and
    current. ``trt``/``gpu``: injected by tests (a fake module; (name, compute capability)).
    """
    t_range = t_range.validate()
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if not workspace_gb > 0:
        raise ConfigError(f"workspace must be positive, got {workspace_gb} GB")
    onnx_dir = Path(onnx_dir)
    onnx = read_manifest(onnx_dir)
    config = onnx.model_config()
    trt = trt or import_tensorrt()
    plan = plan_build(precision, trt.__version__, onnx.precisions, onnx_dir)
    if gpu is None:
        from ..gpu import cuda_memory

        cuda_memory.use_device(device)
        gpu = cuda_memory.device_info(device)
    out = Path(out_dir) if out_dir is not None else default_out_dir(onnx_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache_path = Path(timing_cache) if timing_cache is not None else out / TIMING_CACHE_NAME
    cache_blob = cache_path.read_bytes() if cache_path.is_file() else b""
    workspace = int(workspace_gb * (1 << 30))
    old = None if force else _previous(out)

    progress(f"TensorRT {trt.__version__} on {gpu[0]} (compute capability {gpu[1]}): {plan.route}, "
             f"{plan.onnx_precision} graphs -> {plan.engine_precision} engines, T in [{t_range.min}, {t_range.max}] (opt {t_range.opt})")
    logger = make_logger(trt, verbose)
    engines: dict[str, EngineEntry] = {}
    for i, stage in enumerate(STAGE_ORDER, 1):
        g = onnx.graph(plan.onnx_precision, stage)
        if reusable(old, stage, g.onnx.sha256, plan, trt.__version__, gpu, t_range, workspace):
            engines[stage] = old.engines[stage]
            progress(f"[{i}/{len(STAGE_ORDER)}] {stage}: up to date, kept {old.engines[stage].file}")
            continue
        progress(f"[{i}/{len(STAGE_ORDER)}] {stage}: building from {g.onnx.file} ...")
        built = build_engine(trt, logger, onnx_dir / g.onnx.file, stage, config, plan, t_range, workspace, cache_blob, progress)
        file = f"{stage}.engine"
        _write_atomic(out / file, built.engine)
        cache_blob = built.timing_cache
        _write_atomic(cache_path, cache_blob)
        engines[stage] = EngineEntry(
            stage=stage, file=file, sha256=sha256_file(out / file), bytes=len(built.engine),
            onnx_file=g.onnx.file, onnx_sha256=g.onnx.sha256, profile=built.profile, build_seconds=round(built.seconds, 2),
        )
        extra = f" ({'; '.join(built.notes)})" if built.notes else ""
        progress(f"[{i}/{len(STAGE_ORDER)}] {stage}: {len(built.engine) / 1e6:.1f} MB in {built.seconds:.1f} s{extra}")

    manifest = EngineManifest(
        config=onnx.config,
        onnx={**onnx_identity(onnx_dir), "precision": plan.onnx_precision, "created": onnx.created},
        tensorrt=trt.__version__,
        gpu={"name": gpu[0], "compute_capability": gpu[1]},
        t_range=t_range.as_list(),
        precision=plan.engine_precision,
        route=plan.route,
        engines=engines,
        build={
            "workspace_bytes": workspace,
            "network_flags": list(plan.network_flags),
            "builder_flags": list(plan.builder_flags),
            "timing_cache": str(cache_path),
            "tools": {"avs_engine": __version__, "python": platform.python_version(), "tensorrt": trt.__version__},
        },
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    )
    manifest.write(out)
    progress(f"engines and {manifest.path.name} saved to {out}")
    return manifest


def _previous(out: Path) -> EngineManifest | None:
    try:
        return read_engine_manifest(out, check_files=False)
    except BackendError:
        return None


def _write_atomic(path: Path, data: bytes) -> None:
    with atomic_target(path) as tmp:
        tmp.write_bytes(data)


__all__ = [
    "BuildPlan", "BuildProgress", "PRECISIONS", "build_engine", "build_engines",
    "parse_version", "parser_errors", "plan_build", "reusable",
]
