"""The ONNX Runtime backend: runs the graphs ``avs-export onnx`` wrote.

Reads ``manifest.json`` (never file names) and checks it before anything
runs. CPU execution provider by default; the CUDA and TensorRT providers when
the installed onnxruntime offers them, with I/O binding so that
:meth:`OnnxRuntimeRunner.clip_impl` keeps the stages' outputs on the device.
No torch on this path: the runtime installs numpy + onnxruntime only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import BackendError
from ..artifacts.graph_manifest import PRECISIONS, read_manifest
from ..artifacts.profiles import CPU_ENCODER_BUDGET_BYTES, CPU_SESSION_MEMORY_OPTIONS, cpu_encoder_batch  # noqa: F401 (re-exported)
from ..artifacts.spec import STAGE_ORDER, STAGES
from .base import Runner
from .clocks import StageClock

# Short names accepted for ``providers``.
PROVIDER_ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
}
_DEVICE_OF = {"CPUExecutionProvider": "cpu", "CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}


def _mixed(stage_precisions: dict[str, str], precision: str) -> str:
    """`` (int8: image_encoder, fusion; fp32: audio)`` when some stages of the set compute in another precision."""
    if all(p == precision for p in stage_precisions.values()):
        return ""
    by: dict[str, list[str]] = {}
    for stage, p in stage_precisions.items():
        by.setdefault(p, []).append(stage)
    return " (" + "; ".join(f"{p}: {', '.join(stages)}" for p, stages in sorted(by.items(), key=lambda kv: kv[0] != precision)) + ")"


def _in_words(entry) -> str:
    """What one graph computes in, for result.json: ``int8 (dynamic; MatMul 72 quantized; ...)``."""
    q = entry.quantization
    if entry.precision == "fp16":
        return f"float16 with float32 islands ({', '.join(entry.float32_islands)})"
    if not q:
        return "float32"
    if q.get("computes") != "int8":
        return f"float32 ({q.get('reason', 'kept')})"
    quantized = ", ".join(f"{k} {v}" for k, v in q.get("quantized", {}).items())
    return f"int8 ({q.get('plan', {}).get('method', '?')}; {quantized} quantized, per-channel int8 weights; the rest float32)"


def session_options(ort, threads: int | None):
    """The SessionOptions of every stage's session (benchmarks that time a graph use the same):
    all graph optimisations, ``threads`` intra-op threads (None: ONNX Runtime's default), no
    busy-waiting between runs (the runtime decodes the next clip on the same cores while this
    one runs), and ``CPU_SESSION_MEMORY_OPTIONS``."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for key, value in CPU_SESSION_MEMORY_OPTIONS.items():
        setattr(options, key, value)
    return options


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"

    def __init__(
        self,
        engine_dir: str | Path,
        providers: list[str] | str | None = None,
        precision: str | None = None,
        *,
        device_id: int = 0,
        check_hashes: bool = True,
        threads: int | None = None,
        encoder_batch: int | None = None,
    ) -> None:
        """``engine_dir``: a folder written by ``avs-export onnx``.
        ``providers``: execution providers in order of preference (full names or
        ``cpu``/``cuda``/``tensorrt``); default CPU. ``precision``: ``fp32``, ``fp16`` or
        ``int8`` (CPU only; stages whose INT8 graph missed the export check run FP32);
        default fp32 on CPU, fp16 (when exported) on a GPU provider.
        ``check_hashes``: verify every file's sha256 against the manifest.
        ``threads``: intra-op threads (default: ONNX Runtime's choice).
        ``encoder_batch``: frames per image-encoder call (frames are independent);
        default on CPU: as many as :func:`cpu_encoder_batch` allows (vit_b/l/h: 1;
        tiny: all T), all T at once on a GPU."""
        super().__init__()
        if precision is not None and precision not in PRECISIONS:
            raise BackendError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
        if isinstance(providers, str):
            providers = [providers]
        self.engine_dir = Path(engine_dir)
        self.providers = [PROVIDER_ALIASES.get(p.lower(), p) for p in (providers or ["cpu"])]
        self.precision = precision
        self.device_id = device_id
        self.check_hashes = check_hashes
        self.threads = threads
        self.encoder_batch = encoder_batch
        self.manifest = None
        self.sessions: dict = {}

    @staticmethod
    def unavailable_reason() -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "not available: onnxruntime is not installed (pip install 'avs-engine[onnx]')"
        return None

    # -- activation --------------------------------------------------------------------------

    def activate_impl(self) -> None:
        reason = self.unavailable_reason()
        if reason:
            raise BackendError(f"onnxruntime backend {reason}")
        import onnxruntime as ort

        offered = ort.get_available_providers()
        missing = [p for p in self.providers if p not in offered]
        if missing:
            raise BackendError(
                f"onnxruntime {ort.__version__} here does not offer {', '.join(missing)} (offered: {', '.join(offered)})"
            )
        if "TensorrtExecutionProvider" in self.providers and "CUDAExecutionProvider" not in self.providers \
                and "CUDAExecutionProvider" in offered:
            # nodes TensorRT does not take run on the GPU too, not on the CPU (and no copies between)
            self.providers.insert(self.providers.index("TensorrtExecutionProvider") + 1, "CUDAExecutionProvider")
        if "CPUExecutionProvider" not in self.providers:
            self.providers.append("CPUExecutionProvider")  # ONNX Runtime's fallback for unsupported nodes
        self.device_type = _DEVICE_OF.get(self.providers[0], "cpu")
        manifest = read_manifest(self.engine_dir, check_hashes=self.check_hashes)
        config = manifest.model_config()
        if self.encoder_batch is None:
            self.encoder_batch = cpu_encoder_batch(config) if self.device_type == "cpu" else 1 << 30
        precision = self.precision or ("fp32" if self.device_type == "cpu" or "fp16" not in manifest.precisions else "fp16")
        if precision == "int8" and self.device_type != "cpu":
            # the integer kernels (MatMulInteger, DynamicQuantizeLinear) are CPU kernels: on a GPU provider
            # ONNX Runtime would run them on the CPU between copies
            raise BackendError(f"precision int8 runs on ONNX Runtime's CPU provider, not {self.providers[0]} "
                               "(use fp16 graphs on a GPU)")
        manifest.graph(precision, STAGE_ORDER[0])  # a clear error when that precision was not exported

        options = session_options(ort, self.threads)
        provider_options = [self._provider_options(p) for p in self.providers]
        sessions = {}
        for stage in STAGE_ORDER:
            path = manifest.graph_path(precision, stage)
            try:
                sess = ort.InferenceSession(str(path), options, providers=self.providers, provider_options=provider_options)
            except Exception as e:  # onnxruntime raises its own pybind types (InvalidProtobuf, Fail, ...)
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise BackendError(f"{path}: ONNX Runtime cannot load this graph ({first[:300]})") from None
            self._check_io(sess, stage, path)
            self._check_providers(sess, path)
            sessions[stage] = sess
        self.manifest, self.sessions, self.precision_used = manifest, sessions, precision
        self.config = config
        computes = manifest.stage_precisions(precision)  # an int8 set may run some stages fp32
        self.stage_precision = {s: _in_words(manifest.graph(precision, s)) for s in STAGE_ORDER}
        self.description = f"onnxruntime {ort.__version__} {self.providers[0]} {precision}" + _mixed(computes, precision)
        self._ort = ort

    def _check_providers(self, sess, path: Path) -> None:
        """ONNX Runtime drops a provider that fails to load (CUDA/cuDNN libraries missing, a driver too
        old) with a log line and runs on the next one, down to the CPU: refuse that instead of running
        somewhere else than asked (and binding outputs to a device the session is not on)."""
        active = list(sess.get_providers())
        wanted = self.providers[0]
        if wanted not in active:
            import onnxruntime as ort

            raise BackendError(
                f"{path}: ONNX Runtime {ort.__version__} could not start {wanted} and would run on {', '.join(active) or 'nothing'} "
                "instead (missing CUDA/cuDNN/TensorRT libraries or an old driver? ONNX Runtime's log above says which)"
            )

    def _provider_options(self, provider: str) -> dict[str, str]:
        if provider == "CUDAExecutionProvider":
            return {"device_id": str(self.device_id)}
        if provider == "TensorrtExecutionProvider":
            # Precision lives in the ONNX file (FP16 graphs with FP32 islands): no trt_fp16_enable.
            cache = self.engine_dir / "trt_cache"
            return {"device_id": str(self.device_id), "trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache)}
        return {}

    @staticmethod
    def _check_io(sess, stage: str, path: Path) -> None:
        spec = STAGES[stage]
        got_in = tuple(i.name for i in sess.get_inputs())
        got_out = tuple(o.name for o in sess.get_outputs())
        if set(got_in) != set(spec.input_names) or set(got_out) != set(spec.output_names):
            raise BackendError(
                f"{path}: graph I/O {list(got_in)} -> {list(got_out)} is not stage '{stage}' "
                f"({list(spec.input_names)} -> {list(spec.output_names)})"
            )
        wrong = [i.name for i in sess.get_inputs() if i.type != "tensor(float)"]
        if wrong:
            raise BackendError(f"{path}: inputs {wrong} are not float32 (the exporter keeps float32 I/O)")

    def deactivate_impl(self) -> None:
        self.sessions = {}

    # -- running -----------------------------------------------------------------------------

    def run_impl(self, stage: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec = STAGES[stage]
        feeds = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in inputs.items()}
        if stage == "image_encoder" and len(feeds["image"]) > self.encoder_batch:
            return {"enc": self._encode_chunked(feeds)}
        if self.device_type == "cpu":
            outs = self.sessions[stage].run(list(spec.output_names), feeds)
            return dict(zip(spec.output_names, outs))
        return {k: v.numpy() for k, v in self._run_bound(stage, feeds).items()}

    def _encode_chunked(self, feeds: Mapping[str, object]) -> np.ndarray:
        """The image encoder ``encoder_batch`` frames at a time (frames are independent). -> enc on the host."""
        image = feeds["image"]
        a128 = feeds["a128"] if isinstance(feeds["a128"], np.ndarray) else feeds["a128"].numpy()
        b = self.encoder_batch
        parts = [
            self._run_bound("image_encoder", {"image": image[i : i + b], "a128": a128[i : i + b]})["enc"].numpy()
            for i in range(0, len(image), b)
        ]
        return np.concatenate(parts)

    def _run_bound(self, stage: str, feeds: Mapping[str, object]) -> dict[str, object]:
        """Run with I/O binding: inputs are numpy arrays or OrtValues (any device),
        outputs are OrtValues left on this runner's device."""
        sess = self.sessions[stage]
        binding = sess.io_binding()
        for name, x in feeds.items():
            if isinstance(x, np.ndarray):
                binding.bind_cpu_input(name, np.ascontiguousarray(x, dtype=np.float32))
            else:
                binding.bind_ortvalue_input(name, x)
        for name in STAGES[stage].output_names:
            binding.bind_output(name, self.device_type, self.device_id)
        sess.run_with_iobinding(binding)
        return dict(zip(STAGES[stage].output_names, binding.get_outputs()))

    def clip_impl(self, image: np.ndarray, log_mel: np.ndarray, clock: StageClock) -> np.ndarray:
        """All four stages; intermediate tensors stay where the provider put them (I/O binding).
        ONNX Runtime's run returns when its outputs are ready, so a host clock times each stage."""
        with clock.stage("audio"):
            a128 = self._run_bound("audio", {"log_mel": log_mel})["a128"]
        with clock.stage("image_encoder"):
            if len(image) > self.encoder_batch:
                enc = self._encode_chunked({"image": image, "a128": a128})
            else:
                enc = self._run_bound("image_encoder", {"image": image, "a128": a128})["enc"]
        with clock.stage("fusion"):
            fused = self._run_bound("fusion", {"enc": enc, "a128": a128})
        with clock.stage("mask_decoder"):
            return self._run_bound("mask_decoder", {"enc": enc, **fused})["logits"].numpy()

    def synchronize(self) -> None:
        """ONNX Runtime's run() returns when the results are ready: nothing to wait for."""
