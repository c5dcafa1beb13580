"""One model spec: which model runs on which backend, chosen, checked, described and built in one place.

:class:`ModelSpec` is a small picklable record (it travels to Ray actors and
Serve replicas). :meth:`ModelSpec.choose` picks the backend from the model
options and refuses, with one line each, the options that do not apply to it;
:meth:`ModelSpec.create` builds the runner; :meth:`ModelSpec.describe` says
what ran for ``result.json``. ``avs-run``, ``avs-eval``, ``avs-bench``,
``avs-batch``, ``avs-serve`` and the Python API all go through it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BackendError
from .base import Runner, create_runner

# The precision names of every command -> torch's dtype names (reports label rows with the latter); int8 keeps its name.
PRECISION_DTYPE = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
# Names people bring from torch; accepted and normalised.
PRECISION_ALIASES = {v: k for k, v in PRECISION_DTYPE.items()} | {"half": "fp16"}


def precision_name(text: str | None) -> str | None:
    """``float16`` -> ``fp16`` (names already short, and None, as they are)."""
    return None if text is None else PRECISION_ALIASES.get(text, text)


def _installed(module: str) -> bool:
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
        return "tensorrt", engine_manifest.read_engine_manifest(root, check_files=False).precision
    raise BackendError(f"--engine-dir {root}: no {graph_manifest.MANIFEST_NAME} (ONNX graphs, from avs-export onnx) "
                       f"nor {engine_manifest.MANIFEST_NAME} (TensorRT engines, from avs-export build) here")


def default_weights() -> Path:
    """The bundled demo model (trained on generated videos), used when no --weights is given."""
    from ..models import DEMO_WEIGHTS

    if not DEMO_WEIGHTS.is_file():
        raise BackendError(f"no --weights given and the bundled demo model is missing ({DEMO_WEIGHTS}); reinstall avs-engine or pass --weights FILE")
    return DEMO_WEIGHTS


@dataclass(frozen=True)
class ModelSpec:
    """The model to run and how: picklable, so that each Ray actor or Serve replica builds its own runner.

    ``backend``: ``torch``, ``onnxruntime`` or ``tensorrt``; ``why``: how it was chosen (for messages).
    ``weights``/``config``/``vggish``: the torch backend's checkpoint (``seed`` instead: random weights,
    for benchmarks and exports). ``engine_dir``: ONNX graphs (``manifest.json``) or TensorRT engines
    (``engines.json``). ``device``: cpu, cuda or cuda:N (None: cpu; tensorrt cuda). ``precision``: fp32,
    fp16, bf16 or int8 (None: the backend's default). ``threads``: torch's and ONNX Runtime's intra-op
    CPU threads. ``fused``, ``global_attention_precision``, ``tf32``, ``fusion_variant``, ``compile_blocks``
    (``torch.compile`` of the encoder's blocks): torch options;
    ``cuda_graph``: tensorrt. ``options``: more keyword arguments for the runner.
    """

    backend: str
    why: str = ""
    weights: str | None = None
    config: str | None = None
    vggish: str | None = None
    engine_dir: str | None = None
    device: str | None = None
    precision: str | None = None
    threads: int | None = None
    fused: bool = False
    global_attention_precision: str | None = None
    tf32: bool = False
    fusion_variant: str | None = None
    compile_blocks: bool = False
    cuda_graph: bool = False
    seed: int | None = None
    bundled: bool = False  # the bundled demo model (no model option given)
    engine_precision: str | None = None  # tensorrt: what the engines compute in (engines.json)
    options: dict = field(default_factory=dict)

    # -- choose and refuse -------------------------------------------------------------------------

    @classmethod
    def choose(cls, *, backend: str | None = None, weights=None, config=None, engine_dir=None, **settings) -> "ModelSpec":
        """The backend and model the options name, with ``settings`` (the other fields) checked against it.

        - ``engine_dir``: the backend its manifest names (``backend`` may be left out);
        - ``weights``/``config``: the torch backend (the reference model);
        - none of them: the bundled demo model, its ONNX graphs on ONNX Runtime
          (on torch with ``backend="torch"``, or when onnxruntime is not installed).
        ``settings["device"]``: give it only when the user did (a default is no reason to refuse).
        Raises :class:`BackendError` with one line for the first option that does not apply.
        """
        settings["precision"] = precision_name(settings.get("precision"))
        settings["global_attention_precision"] = precision_name(settings.get("global_attention_precision"))
        for key in ("vggish",):
            if settings.get(key) is not None:
                settings[key] = str(settings[key])
        spec = cls(**cls._model(backend, weights, config, engine_dir), **settings)
        spec.refuse()
        return spec

    @staticmethod
    def _model(backend, weights, config, engine_dir) -> dict:
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
            return dict(backend=kind, why=why, engine_dir=str(engine_dir), engine_precision=precision)
        if weights is not None or config is not None:
            if backend not in (None, "torch"):
                raise BackendError(f"--backend {backend} needs --engine-dir DIR (graphs from avs-export onnx, engines from "
                                   "avs-export build); --weights/--config run on the torch backend")
            if weights is None:
                raise BackendError(f"--config {config} given without --weights: pass the checkpoint to run with it")
            return dict(backend="torch", why="--backend torch" if backend else "the torch backend runs --weights",
                        weights=str(weights), config=None if config is None else str(config))
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
            return dict(backend="onnxruntime", why=why, engine_dir=str(DEMO_GRAPHS), bundled=True)
        return dict(backend="torch", why=why, weights=str(default_weights()), bundled=True)

    def refuse(self) -> None:
        """One :class:`BackendError` line for the first option that does not apply to the backend."""
        b, precision = self.backend, self.precision
        where = f"this run uses the {b} backend ({self.why})"
        explicit = self.why.startswith("--backend")
        hint = "; add --backend torch to run the bundled demo model on torch" if self.bundled and b != "torch" and not explicit else ""
        if self.fused and b != "torch":
            extra = " (the exported graphs already contain its exact-algebra forms)" if b == "onnxruntime" else " (the tensorrt backend has no fused path yet)"
            raise BackendError(f"--fused needs the torch backend{extra}; {where}{hint}")
        if self.global_attention_precision is not None and not (self.fused and b == "torch"):
            raise BackendError("--global-attention-precision sets the precision of the fused CUDA kernels' global attention: "
                               f"it needs --fused on the torch backend; {where}")
        if self.tf32 and b != "torch":
            raise BackendError(f"--tf32 sets how the torch backend multiplies in float32 on CUDA; {where}")
        if self.compile_blocks and b != "torch":
            raise BackendError(f"--compile applies torch.compile to the torch backend's encoder (exported graphs are compiled by "
                               f"their runtime); {where}{hint}")
        if self.cuda_graph and b != "tensorrt":
            raise BackendError(f"--cuda-graph needs the tensorrt backend (it replays the TensorRT engines as one CUDA graph); {where}")
        if precision == "int8" and b != "onnxruntime":
            raise BackendError(f"--precision int8 needs the onnxruntime backend on the CPU (INT8 ONNX graphs from avs-export onnx "
                               f"--precision int8, run with --engine-dir DIR); {where}")
        if precision == "bf16" and b != "torch":
            raise BackendError(f"--precision bf16 needs the torch backend (ONNX graphs and TensorRT engines are fp32 or fp16); {where}{hint}")
        if precision is not None and b == "tensorrt" and self.engine_precision and precision != self.engine_precision:
            raise BackendError(f"--precision {precision}: the engines in {self.engine_dir} compute in {self.engine_precision} "
                               f"(rebuild them with avs-export build --precision {precision}, or leave --precision out)")
        if self.vggish is not None and b != "torch":
            raise BackendError(f"--vggish needs the torch backend (the exported graphs carry their audio weights); {where}")
        if self.threads is not None and b == "tensorrt":
            raise BackendError(f"--threads sets torch's and ONNX Runtime's CPU threads; {where}, which computes on the GPU")
        if self.device == "cpu" and b == "tensorrt":
            raise BackendError(f"--device cpu: {where}, which runs on a GPU (--device cuda or cuda:N)")
        if self.fusion_variant not in (None, "full") and b != "torch":
            raise BackendError(f"--fusion-variant needs the torch backend (exported graphs fix the fusion); {where}{hint}")

    def replace(self, **changes) -> "ModelSpec":
        return dataclasses.replace(self, **changes)

    # -- build -------------------------------------------------------------------------------------

    @property
    def device_name(self) -> str:
        return self.device or ("cuda" if self.backend == "tensorrt" else "cpu")

    @property
    def device_id(self) -> int:
        """``cuda`` -> 0, ``cuda:1`` -> 1 (``cpu`` -> 0)."""
        return int(self.device_name.split(":", 1)[1]) if ":" in self.device_name else 0

    def runner_kwargs(self) -> dict:
        """The keyword arguments of ``create_runner(self.backend, ...)``."""
        if self.backend == "torch":
            kw = {"device": self.device_name, "dtype": PRECISION_DTYPE[self.precision or "fp32"], "fused": self.fused}
            if self.weights is not None:
                kw.update(weights=self.weights, config=self.config, vggish=self.vggish)
            else:
                kw.update(config=self.config, seed=self.seed)
            if self.global_attention_precision is not None:
                kw["global_attention_dtype"] = PRECISION_DTYPE[self.global_attention_precision]
            if self.tf32:
                kw["tf32"] = True
            if self.fusion_variant:
                kw["fusion_variant"] = self.fusion_variant
            if self.compile_blocks:
                kw["compile"] = True
        elif self.backend == "onnxruntime":
            kw = {"engine_dir": self.engine_dir, "providers": ["cpu"] if self.device_name == "cpu" else ["cuda"],
                  "precision": self.precision, "device_id": self.device_id}
        else:
            kw = {"engine_dir": self.engine_dir, "device_id": self.device_id, "cuda_graph": self.cuda_graph}
        if self.threads and self.backend != "tensorrt":
            kw["threads"] = self.threads
        return {**kw, **self.options}

    def create(self) -> Runner:
        """The runner (not yet activated)."""
        return create_runner(self.backend, **self.runner_kwargs())

    def img_size(self) -> int:
        """The encoder's input side S: from the graphs' or engines' manifest, else (torch) from the runner."""
        if self.backend == "onnxruntime" and self.engine_dir:
            from ..artifacts.graph_manifest import read_manifest

            return read_manifest(Path(self.engine_dir), check_files=False).model_config().encoder.img_size
        if self.backend == "tensorrt" and self.engine_dir:
            from ..artifacts.engine_manifest import read_engine_manifest

            return read_engine_manifest(Path(self.engine_dir), check_files=False).model_config().encoder.img_size
        runner = self.create().activate()
        try:
            return int(runner.config.encoder.img_size)
        finally:
            runner.deactivate()

    # -- describe ----------------------------------------------------------------------------------

    def describe(self, runner: Runner) -> dict:
        """What ``result.json`` (and avs-eval's metrics) record about the model ``runner`` (built from this spec) runs."""
        cfg = runner.config
        d = {"backend": runner.name, "runner": runner.description, "preset": cfg.name}
        if getattr(runner, "stage_precision", None):
            d["compute_precision"] = dict(runner.stage_precision)
        weights = self.weights
        if weights is not None:
            from ..artifacts.graph_manifest import sha256_file

            d["weights"] = str(weights)
            d["weights_sha256"] = sha256_file(weights)
        if self.engine_dir is not None:
            d["engine_dir"] = str(self.engine_dir)
            checkpoint = getattr(getattr(runner, "manifest", None), "checkpoint", None)
            if isinstance(checkpoint, dict) and checkpoint:
                d["checkpoint"] = checkpoint  # what the graphs were exported from (file names and sha256)
        from ..models import DEMO_WEIGHTS

        bundled = self.bundled or (weights is not None and Path(weights).resolve() == DEMO_WEIGHTS)
        d["bundled_demo"] = bundled
        where = (" - the bundled demo model (trained on generated videos; pass --weights or --engine-dir for your own)" if bundled
                 else f" from {weights}" if weights else f" from {self.engine_dir}" if self.engine_dir is not None
                 else f" (random weights, seed {self.seed})" if self.seed is not None else "")
        d["summary"] = f"{cfg.name} ({runner.description}){where}"
        return d


__all__ = ["ModelSpec", "PRECISION_ALIASES", "PRECISION_DTYPE", "default_weights", "engine_dir_backend", "precision_name"]
