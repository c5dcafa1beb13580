"""The tensorrt backend: runs the engines ``avs-export build`` wrote, with TensorRT + cuda-python.

Reads ``engines.json`` (never file names) and refuses, with one line saying
what to rebuild, engines built for another GPU or TensorRT version or a clip
length outside their profile (:mod:`avs_engine.artifacts.engine_manifest`).
Then: one execution context per engine, every I/O tensor on a device buffer
from cuda-python (``set_input_shape`` + ``set_tensor_address``),
``execute_async_v3`` on one stream. :meth:`TensorRTRunner.clip_impl` chains
the four stages on the device: the image and log-mel go in through pinned
host buffers, ``a128``/``enc``/``dense``/``sparse`` stay on the GPU, and only
the logits come back. With ``cuda_graph=True`` the whole clip (copies and
four engines) is captured once per T and replayed. No torch anywhere here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import BackendError
from ..artifacts.engine_manifest import EngineManifest, RuntimeInfo, check_clip_length, check_runtime, read_engine_manifest
from ..artifacts.profiles import HOST_INPUTS, HOST_OUTPUTS, Binding, chain_buffers
from ..artifacts.spec import STAGE_ORDER, STAGES
from .base import Runner
from .clocks import EventStageClock, StageClock

FUSED_UNAVAILABLE = (
    "--fused is not available with the tensorrt backend yet: the fused CUDA kernels (avs_engine.kernels) cover "
    "the ST-BAVA attention reductions only, and the fusion stage's projections, MLPs and LayerNorms have no "
    "torch-free implementation to run beside them; run without --fused (the fusion engine runs instead)"
)


class TensorRTRunner(Runner):
    name = "tensorrt"

    def __init__(
        self,
        engine_dir: str | Path,
        *,
        device_id: int = 0,
        check_hashes: bool = True,
        cuda_graph: bool = False,
        fused: bool = False,
        verbose: bool = False,
    ) -> None:
        """``engine_dir``: the folder holding ``engines.json`` (or the ONNX folder whose
        ``tensorrt/`` subfolder holds it). ``check_hashes``: verify each engine's sha256.
        ``cuda_graph``: capture the clip (:meth:`run_clip`) as a CUDA graph per clip length and replay it.
        ``fused``: the fusion stage on the fused CUDA kernels (refused: see ``FUSED_UNAVAILABLE``)."""
        super().__init__()
        self.engine_dir = Path(engine_dir)
        self.device_id = int(device_id)
        self.check_hashes = check_hashes
        self.cuda_graph = cuda_graph
        self.fused = fused
        self.verbose = verbose
        self.manifest: EngineManifest | None = None
        self.warnings: list[str] = []
        self._engines: dict = {}
        self._contexts: dict = {}
        self._dtypes: dict[str, str] = {}
        self._device: dict = {}  # tensor name -> DeviceBuffer
        self._pinned: dict = {}  # tensor name -> PinnedBuffer
        self._graphs: dict[int, object] = {}  # T -> CudaGraph
        self._shapes_T: int | None = None  # T the contexts' input shapes are set for
        self._stream = None
        self._runtime = None
        self._logger = None

    @staticmethod
    def unavailable_reason() -> str | None:
        """Why this backend cannot run here (imports only; no device touched), or None."""
        from ..gpu.tensorrt_api import import_tensorrt

        try:
            import_tensorrt()
        except BackendError as e:
            return f"not available: {e}"
        try:
            from cuda.bindings import runtime  # noqa: F401
        except ImportError:
            from ..gpu.cuda_memory import CUDA_INSTALL

            return f"not available: cuda-python is not installed ({CUDA_INSTALL})"
        return None

    # -- activation --------------------------------------------------------------------------

    def activate_impl(self) -> None:
        from ..gpu.tensorrt_api import import_tensorrt, make_logger
        from ..gpu import cuda_memory as cm

        if self.fused:
            raise BackendError(FUSED_UNAVAILABLE)
        trt = import_tensorrt()
        cm.cudart()  # cuda-python present, or one line
        manifest = read_engine_manifest(self.engine_dir, check_hashes=self.check_hashes)
        config = manifest.model_config()
        cm.use_device(self.device_id)  # no GPU / no driver: one line
        name, cc = cm.device_info(self.device_id)
        self.warnings = check_runtime(manifest, RuntimeInfo(trt.__version__, name, cc))

        self._logger = make_logger(trt, self.verbose)
        runtime = trt.Runtime(self._logger)
        engines, contexts, dtypes = {}, {}, {}
        for stage in STAGE_ORDER:
            path = manifest.engine_path(stage)
            engine = runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                why = (self._logger.errors[-1].strip().splitlines() or ["?"])[0] if self._logger.errors else "see TensorRT's messages above"
                raise BackendError(f"{path}: TensorRT {trt.__version__} cannot load this engine ({why}); rebuild: {manifest.rebuild_hint()}")
            dtypes.update(self._check_io(trt, engine, stage, path))
            context = engine.create_execution_context()
            if context is None:
                raise BackendError(f"{path}: TensorRT could not create an execution context (out of GPU memory?)")
            engines[stage], contexts[stage] = engine, context
        self._trt, self._runtime = trt, runtime
        self._engines, self._contexts, self._dtypes = engines, contexts, dtypes
        self._stream = cm.Stream()
        self.manifest, self.config = manifest, config
        self.description = f"tensorrt {trt.__version__} {manifest.precision} on {name}" + (" +cuda-graph" if self.cuda_graph else "")

    @staticmethod
    def _check_io(trt, engine, stage: str, path: Path) -> dict[str, str]:
        """The engine's I/O must be the stage's (names, modes, float dtypes); returns name -> dtype."""
        spec = STAGES[stage]
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        modes = {n: engine.get_tensor_mode(n) for n in names}
        got_in = sorted(n for n in names if modes[n] == trt.TensorIOMode.INPUT)
        got_out = sorted(n for n in names if modes[n] == trt.TensorIOMode.OUTPUT)
        if got_in != sorted(spec.input_names) or got_out != sorted(spec.output_names):
            raise BackendError(
                f"{path}: engine I/O {got_in} -> {got_out} is not stage '{stage}' "
                f"({sorted(spec.input_names)} -> {sorted(spec.output_names)}); rebuild the engines"
            )
        known = {trt.float32: "float32", trt.float16: "float16"}
        out = {}
        for n in names:
            dt = engine.get_tensor_dtype(n)
            if dt not in known:
                raise BackendError(f"{path}: tensor '{n}' has dtype {dt}; float32 or float16 expected")
            out[n] = known[dt]
        return out

    def _use_device(self) -> None:
        """Make the runner's GPU current for the calling thread: the CUDA current device is per
        thread, and a runner may be driven from another thread than the one that activated it."""
        from ..gpu import cuda_memory as cm

        cm.use_device(self.device_id)

    def __del__(self) -> None:
        # A runner dropped while active still holds device buffers, pinned memory, a stream and
        # TensorRT objects: release them (on its own device). Never raise from a finalizer.
        try:
            if getattr(self, "is_active", False):
                self.deactivate()
        except Exception:
            pass

    def deactivate_impl(self) -> None:
        self._use_device()
        self._drop_graphs()
        if self._stream is not None:
            self._stream.synchronize()
        for buf in [*self._device.values(), *self._pinned.values()]:
            buf.free()
        self._device, self._pinned = {}, {}
        self._contexts, self._engines = {}, {}  # contexts before engines before the runtime
        self._runtime = None
        if self._stream is not None:
            self._stream.destroy()
            self._stream = None
        self._shapes_T = None

    # -- buffers and bindings ------------------------------------------------------------------

    def _check_T(self, T: int) -> None:
        check_clip_length(self.manifest, T)

    def _buffers(self, T: int) -> dict[str, Binding]:
        """Device buffers (and pinned host buffers for the clip's inputs/outputs) large enough for T.
        When one moves, the bindings and any captured graphs are stale: they are redone."""
        from ..gpu import cuda_memory as cm

        plan = chain_buffers(self.config, T, self._dtypes)
        moved = False
        for name, b in plan.items():
            if name not in self._device:
                self._device[name] = cm.DeviceBuffer(b.nbytes, name)
                moved = True
            else:
                moved |= self._device[name].ensure(b.nbytes)
            if name in HOST_INPUTS + HOST_OUTPUTS:
                if name not in self._pinned:
                    self._pinned[name] = cm.PinnedBuffer(b.nbytes, name)
                    moved = True
                else:
                    moved |= self._pinned[name].ensure(b.nbytes)
        if moved:
            self._drop_graphs()
            self._shapes_T = None
        return plan

    def _bind(self, T: int, plan: dict[str, Binding]) -> None:
        """set_input_shape + set_tensor_address for every stage, for clip length T (once per T)."""
        if self._shapes_T == T:
            return
        # A captured graph bakes in the contexts' state for its T: after a shape change none is safe to
        # replay (TensorRT wants an uncaptured enqueue after a shape change), so graphs are recaptured.
        self._drop_graphs()
        for stage in STAGE_ORDER:
            ctx = self._contexts[stage]
            spec = STAGES[stage]
            for t in spec.inputs:
                if not ctx.set_input_shape(t.name, plan[t.name].shape):
                    raise BackendError(f"TensorRT refused shape {list(plan[t.name].shape)} for '{t.name}' of the {stage} engine")
            for t in (*spec.inputs, *spec.outputs):
                if not ctx.set_tensor_address(t.name, self._device[t.name].ptr):
                    raise BackendError(f"TensorRT refused the device address of '{t.name}' for the {stage} engine")
            for t in spec.outputs:
                got = tuple(ctx.get_tensor_shape(t.name))
                if got != plan[t.name].shape:
                    raise BackendError(f"the {stage} engine gives '{t.name}' shape {list(got)} at T={T}, expected {list(plan[t.name].shape)}")
        self._shapes_T = T

    def _enqueue(self, stage: str) -> None:
        if not self._contexts[stage].execute_async_v3(self._stream.handle):
            raise BackendError(f"TensorRT could not enqueue the {stage} engine (execute_async_v3 returned False)")

    def _to_device(self, name: str, x: np.ndarray, binding: Binding) -> None:
        """Host array -> pinned staging buffer -> device buffer (asynchronous on the stream)."""
        staged = self._pinned.get(name)
        arr = np.ascontiguousarray(x, dtype=binding.dtype)
        if staged is None:  # a stage input that run_clip keeps on the device: stage it through a pinned buffer too
            from ..gpu import cuda_memory as cm

            staged = self._pinned[name] = cm.PinnedBuffer(binding.nbytes, name)
        staged.ensure(binding.nbytes)
        staged.array(binding.shape, binding.dtype)[...] = arr
        self._stream.copy_to_device(self._device[name].ptr, staged.ptr, binding.nbytes, name)

    def _from_device(self, name: str, binding: Binding) -> np.ndarray:
        staged = self._pinned.get(name)
        if staged is None:
            from ..gpu import cuda_memory as cm

            staged = self._pinned[name] = cm.PinnedBuffer(binding.nbytes, name)
        staged.ensure(binding.nbytes)
        self._stream.copy_to_host(staged.ptr, self._device[name].ptr, binding.nbytes, name)
        return staged

    # -- running -----------------------------------------------------------------------------

    def run_impl(self, stage: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = STAGES[stage]
        T = int(next(iter(inputs.values())).shape[0])
        self._check_T(T)
        self._use_device()
        plan = self._buffers(T)
        self._bind(T, plan)
        for name, x in inputs.items():
            self._to_device(name, x, plan[name])
        self._enqueue(stage)
        staged = {t.name: self._from_device(t.name, plan[t.name]) for t in spec.outputs}
        self._stream.synchronize()
        return {n: staged[n].array(plan[n].shape, plan[n].dtype).astype(np.float32, copy=True) for n in staged}

    def stage_clock(self) -> StageClock:
        from ..gpu.cuda_memory import Event

        stream = self._stream
        return EventStageClock(lambda: Event(stream), "CUDA events on the runner's stream (cuda-python)")

    def clip_impl(self, image: np.ndarray, log_mel: np.ndarray, clock: StageClock) -> np.ndarray:
        """All four engines on the device, one stream: only the image, the log-mel and the logits cross
        to the host. With ``cuda_graph`` the clip is one graph replay, timed as the stage ``model``."""
        T = int(image.shape[0])
        self._check_T(T)
        self._use_device()
        plan = self._buffers(T)
        self._bind(T, plan)
        for name, x in (("image", image), ("log_mel", log_mel)):
            self._pinned[name].array(plan[name].shape, plan[name].dtype)[...] = x
        if self.cuda_graph:
            if T not in self._graphs:
                from ..gpu.cuda_memory import CudaGraph

                self._enqueue_clip(plan)  # TensorRT's first enqueue for a shape may set up state: never capture it
                self._stream.synchronize()
                self._graphs[T] = CudaGraph(self._stream, lambda: self._enqueue_clip(plan))
            with clock.stage("model"):
                self._graphs[T].launch()
        else:
            self._enqueue_clip(plan, clock)
        self._stream.synchronize()
        b = plan["logits"]
        return self._pinned["logits"].array(b.shape, b.dtype).astype(np.float32, copy=True)

    def _drop_graphs(self) -> None:
        for g in self._graphs.values():
            g.destroy()
        self._graphs = {}

    def _enqueue_clip(self, plan: dict[str, Binding], clock: StageClock | None = None) -> None:
        """Copies in, the four engines, copy out: everything on the stream, nothing waited for.
        ``clock``: events around each engine (not while capturing a graph)."""
        for name in HOST_INPUTS:
            self._stream.copy_to_device(self._device[name].ptr, self._pinned[name].ptr, plan[name].nbytes, name)
        for stage in STAGE_ORDER:
            if clock is None:
                self._enqueue(stage)
            else:
                with clock.stage(stage):
                    self._enqueue(stage)
        for name in HOST_OUTPUTS:
            self._stream.copy_to_host(self._pinned[name].ptr, self._device[name].ptr, plan[name].nbytes, name)

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
