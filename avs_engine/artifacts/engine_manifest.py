"""``engines.json``: what ``avs-export build`` built, from what and for what.

Next to the engines, it records the model config, the ONNX folder's identity
(its ``manifest.json`` sha256 and each graph's sha256), the TensorRT version,
the GPU (name, compute capability), the T range of the optimisation profiles
(and every input's min/opt/max shape), the precision route and the build
time. The runtime reads engines only through it and refuses, with one line
saying what to rebuild, engines built for another GPU or TensorRT version
or a clip length outside their profile (:func:`check_runtime`). Plain Python:
no TensorRT, no CUDA.

Layout (file names are the builder's choice; readers follow the manifest)::

    ENGINE_DIR/engines.json
    ENGINE_DIR/{audio,image_encoder,fusion,mask_decoder}.engine
    ENGINE_DIR/timing.cache        (TensorRT's timing cache, reused across builds)

``avs-export build`` writes ENGINE_DIR = ONNX_DIR/tensorrt unless told otherwise;
a runner given the ONNX folder looks there (:func:`locate`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import BackendError, ConfigError
from .spec import STAGE_ORDER
from .graph_manifest import ManifestFile, sha256_file
from .profiles import TRange

FORMAT = "avs-engine-trt/1"
MANIFEST_NAME = "engines.json"
DEFAULT_SUBDIR = "tensorrt"
# How the network was typed: precision from the ONNX file (strong) or TensorRT 10's FP16 builder flag (weak).
ROUTES = ("strongly-typed", "weakly-typed-fp16")


@dataclass
class EngineEntry:
    """One engine file and the graph it was built from."""

    stage: str
    file: str  # relative to the manifest's folder
    sha256: str
    bytes: int
    onnx_file: str  # the graph's path as the ONNX manifest lists it
    onnx_sha256: str  # the graph's sha256 as the ONNX manifest lists it
    profile: dict[str, list[list[int]]] = field(default_factory=dict)  # input -> [min, opt, max] shapes
    build_seconds: float = 0.0


@dataclass
class EngineManifest(ManifestFile):
    config: dict[str, Any]
    onnx: dict[str, Any]  # {"dir", "manifest_sha256", "precision", "created"}
    tensorrt: str  # trt.__version__ at build time
    gpu: dict[str, Any]  # {"name", "compute_capability": "9.0"}
    t_range: list[int]  # [min, opt, max]
    precision: str  # "fp16" | "fp32": what the engines compute in
    route: str  # one of ROUTES
    engines: dict[str, EngineEntry]
    build: dict[str, Any] = field(default_factory=dict)  # workspace, builder options, tool versions
    created: str = ""
    format: str = FORMAT
    root: Path | None = field(default=None, compare=False)

    FILE_NAME: ClassVar[str] = MANIFEST_NAME

    @property
    def T(self) -> TRange:
        return TRange.from_list(self.t_range)

    def engine_path(self, stage: str) -> Path:
        return (self.root or Path(".")) / self.engines[stage].file

    def rebuild_hint(self, t: TRange | None = None) -> str:
        """The command that rebuilds these engines (used in every refusal); ``t``: another T range."""
        onnx_dir = self.onnx.get("dir") or "ONNX_DIR"
        cmd = f"avs-export build --onnx-dir {onnx_dir}"
        if self.root is not None and Path(onnx_dir) / DEFAULT_SUBDIR != self.root:
            cmd += f" --out {self.root}"
        if self.precision == "fp32" or self.route != "strongly-typed":
            cmd += " --precision " + ("fp16-weak" if self.route != "strongly-typed" else "fp32")
        t = t or self.T
        if (t.min, t.opt, t.max) != (1, 5, 8):
            cmd += f" --min-t {t.min} --opt-t {t.opt} --max-t {t.max}"
        return cmd

    # -- (de)serialisation --------------------------------------------------------------------


    @classmethod
    def from_dict(cls, d: dict[str, Any], root: Path) -> "EngineManifest":
        path = root / MANIFEST_NAME
        try:
            m = cls(
                config=dict(d["config"]),
                onnx=dict(d["onnx"]),
                tensorrt=str(d["tensorrt"]),
                gpu=dict(d["gpu"]),
                t_range=[int(x) for x in d["t_range"]],
                precision=str(d["precision"]),
                route=str(d["route"]),
                engines={k: EngineEntry(**v) for k, v in d["engines"].items()},
                build=dict(d.get("build", {})),
                created=str(d.get("created", "")),
                format=d["format"],
                root=root,
            )
            TRange.from_list(m.t_range).validate()
            str(m.gpu["name"]), str(m.gpu["compute_capability"])
        except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as e:
            raise BackendError(f"{path}: malformed engine manifest ({type(e).__name__}: {e})") from None
        return m


def locate(engine_dir: str | Path) -> Path:
    """The folder holding ``engines.json``: ``engine_dir`` itself, or ``engine_dir/tensorrt``
    (where ``avs-export build`` puts engines built from the ONNX folder ``engine_dir``)."""
    root = Path(engine_dir)
    if not root.is_dir():
        raise BackendError(f"{root}: engine folder not found")
    for cand in (root, root / DEFAULT_SUBDIR):
        if (cand / MANIFEST_NAME).is_file():
            return cand
    raise BackendError(
        f"{root}: no {MANIFEST_NAME} here or in {root / DEFAULT_SUBDIR} "
        f"(build TensorRT engines with avs-export build --onnx-dir ONNX_DIR)"
    )


def read_engine_manifest(engine_dir: str | Path, *, check_files: bool = True, check_hashes: bool = True) -> EngineManifest:
    """Read and validate ``engines.json`` (found by :func:`locate`).

    Checks, each failing with one :class:`BackendError` line: format version,
    every stage present, every engine file present with the recorded size and
    (``check_hashes``) sha256.
    """
    root = locate(engine_dir)
    path = root / MANIFEST_NAME
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BackendError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise BackendError(f"{path}: malformed engine manifest (expected a JSON object)")
    if d.get("format") != FORMAT:
        raise BackendError(
            f"{path}: engine manifest format '{d.get('format')}' is not the one this avs-engine reads ('{FORMAT}'); "
            "rebuild with this version's avs-export build"
        )
    m = EngineManifest.from_dict(d, root)
    missing = [s for s in STAGE_ORDER if s not in m.engines]
    if missing:
        raise BackendError(f"{path}: no engine for stage(s) {', '.join(missing)}; rebuild: {m.rebuild_hint()}")
    if m.route not in ROUTES:
        raise BackendError(f"{path}: unknown build route '{m.route}' (expected one of {', '.join(ROUTES)})")
    if check_files:
        for stage in STAGE_ORDER:
            e = m.engines[stage]
            p = root / e.file
            if not p.is_file():
                raise BackendError(f"{p}: engine file listed in {path} is missing; rebuild: {m.rebuild_hint()}")
            if p.stat().st_size != e.bytes:
                raise BackendError(f"{p}: {p.stat().st_size} bytes, the manifest says {e.bytes}; rebuild: {m.rebuild_hint()}")
            if check_hashes and sha256_file(p) != e.sha256:
                raise BackendError(f"{p}: sha256 does not match {path} (changed since the build?); rebuild: {m.rebuild_hint()}")
    return m


# -- mismatch rules --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeInfo:
    """What the running machine offers: TensorRT version, GPU name and compute capability ("9.0")."""

    tensorrt: str
    gpu_name: str
    compute_capability: str


def check_runtime(m: EngineManifest, info: RuntimeInfo, T: int | None = None) -> list[str]:
    """Refuse engines that cannot run here; return warnings for those that can but differ.

    Rules (TensorRT engines are tied to the TensorRT version and the GPU they were built on,
    unless built version- or hardware-compatible, which ``avs-export build`` does not do):

    - a different TensorRT version (the full version string) -> refuse;
    - a different compute capability -> refuse;
    - the same compute capability but another GPU name -> allowed, with a warning
      (TensorRT tunes tactics per GPU model: it runs, possibly slower);
    - ``T`` outside the profile's T range -> refuse.

    Each refusal is one :class:`BackendError` line naming what differs and the rebuild command.
    """
    where = f"the engines in {m.root}" if m.root else "the engines"
    if info.tensorrt != m.tensorrt:
        raise BackendError(
            f"{where} were built with TensorRT {m.tensorrt}, this machine has TensorRT {info.tensorrt}; "
            f"rebuild them here: {m.rebuild_hint()}"
        )
    built_cc = str(m.gpu["compute_capability"])
    if info.compute_capability != built_cc:
        raise BackendError(
            f"{where} were built for {m.gpu['name']} (compute capability {built_cc}), this GPU is "
            f"{info.gpu_name} (compute capability {info.compute_capability}); rebuild them on this GPU: {m.rebuild_hint()}"
        )
    warnings = []
    if info.gpu_name != m.gpu["name"]:
        warnings.append(
            f"{where} were tuned on {m.gpu['name']}, this GPU is {info.gpu_name} (same compute capability "
            f"{built_cc}): they run, but a rebuild here may be faster ({m.rebuild_hint()})"
        )
    if T is not None:
        check_clip_length(m, T)
    return warnings


def check_clip_length(m: EngineManifest, T: int) -> None:
    """One :class:`BackendError` line when clip length ``T`` is outside the engines' T range."""
    t = m.T
    if not t.contains(T):
        where = f"the engines in {m.root}" if m.root else "the engines"
        wider = TRange(min(t.min, int(T)), t.opt, max(t.max, int(T)))
        raise BackendError(
            f"clip length T={T} is outside the T range [{t.min}, {t.max}] of {where}; "
            f"rebuild them: {m.rebuild_hint(wider)} (or run with -T between {t.min} and {t.max})"
        )


def onnx_identity(onnx_dir: Path) -> dict[str, Any]:
    """The ONNX folder's identity as recorded in ``engines.json``: its path and manifest hash."""
    from .graph_manifest import MANIFEST_NAME as ONNX_MANIFEST

    return {"dir": str(onnx_dir), "manifest_sha256": sha256_file(Path(onnx_dir) / ONNX_MANIFEST)}


def stale_engines(m: EngineManifest, graph_hashes: dict[str, str]) -> list[str]:
    """Stages whose engine was built from a graph other than the current one (sha256 by stage)."""
    return [s for s in STAGE_ORDER if s in m.engines and graph_hashes.get(s) != m.engines[s].onnx_sha256]
