"""``manifest.json``: what ``avs-export onnx`` wrote, so that a runtime never guesses.

The manifest sits next to the graphs and records the model config, the
checkpoint's hash, every graph file (and its external-data files) with its
sha256, each graph's inputs/outputs from :mod:`avs_engine.artifacts.spec`, precision,
opset and tool versions. Runtimes read graphs only through it.

No torch and no onnx here: the ONNX Runtime backend imports this module.

Layout written by the exporter (file names are the exporter's choice; readers
follow the manifest)::

    DIR/manifest.json
    DIR/fp32/{audio,image_encoder,fusion,mask_decoder}.onnx   (+ .onnx.data for big graphs)
    DIR/fp16/...
    DIR/int8/...   (stages whose INT8 graph missed the bar list their fp32/ file in the int8 set)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..config import ModelConfig
from ..errors import BackendError, ConfigError
from ..atomic import atomic_target
from .spec import STAGE_ORDER, STAGES, StageSpec

FORMAT = "avs-engine-onnx/1"
MANIFEST_NAME = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def io_spec(stage: StageSpec) -> dict[str, list[dict[str, Any]]]:
    """A stage's declared I/O as JSON: ``{"inputs": [{"name", "shape", "dtype"}], "outputs": [...]}``."""
    as_json = lambda ts: [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in ts]  # noqa: E731
    return {"inputs": as_json(stage.inputs), "outputs": as_json(stage.outputs)}


@dataclass
class FileEntry:
    """One file of a graph, relative to the manifest's folder."""

    file: str
    sha256: str
    bytes: int

    @classmethod
    def of(cls, root: Path, path: Path) -> "FileEntry":
        return cls(file=path.relative_to(root).as_posix(), sha256=sha256_file(path), bytes=path.stat().st_size)


@dataclass
class GraphEntry:
    """One exported graph: the ONNX file, its external data files and its I/O."""

    stage: str
    precision: str
    onnx: FileEntry
    external_data: list[FileEntry] = field(default_factory=list)
    io: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    float32_islands: list[str] = field(default_factory=list)  # op types kept in float32 (fp16 graphs)
    # int8 graphs: what the stage computes in ("computes": int8 or fp32), what was quantized, what
    # stayed float32 and why, and the export-time check against the FP32 graph
    quantization: dict[str, Any] | None = None

    @property
    def computes(self) -> str:
        """The precision this stage really runs in (an int8 set's stage may have stayed fp32)."""
        return (self.quantization or {}).get("computes", self.precision)

    def files(self) -> list[FileEntry]:
        return [self.onnx, *self.external_data]


class ManifestFile:
    """What the manifests (``manifest.json``, ``engines.json``) share: a dataclass with
    ``config``, ``format`` and ``root`` fields, stored as ``root/FILE_NAME``."""

    FILE_NAME: ClassVar[str]

    @property
    def path(self) -> Path:
        return (self.root or Path(".")) / self.FILE_NAME

    def model_config(self) -> ModelConfig:
        try:
            return ModelConfig.from_dict(self.config, source=str(self.path))
        except ConfigError as e:
            raise BackendError(str(e)) from None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("root")
        return {"format": d.pop("format"), **d}

    def write(self, root: str | Path) -> Path:
        """Write ``root/FILE_NAME`` atomically."""
        self.root = Path(root)
        with atomic_target(self.path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return self.path


@dataclass
class Manifest(ManifestFile):
    config: dict[str, Any]
    checkpoint: dict[str, Any]
    opset: int
    graphs: dict[str, dict[str, GraphEntry]]  # precision -> stage -> entry
    tools: dict[str, str] = field(default_factory=dict)
    created: str = ""
    parity: dict[str, Any] | None = None
    format: str = FORMAT
    root: Path | None = field(default=None, compare=False)  # the folder it was read from / written to

    FILE_NAME: ClassVar[str] = MANIFEST_NAME

    # -- queries -----------------------------------------------------------------------------

    @property
    def precisions(self) -> list[str]:
        return [p for p in PRECISIONS if p in self.graphs]

    def graph(self, precision: str, stage: str) -> GraphEntry:
        if precision not in self.graphs:
            raise BackendError(
                f"{self.path}: no {precision} graphs (exported: {', '.join(self.precisions) or 'none'}); "
                f"re-export with avs-export onnx --precision {precision}"
            )
        try:
            return self.graphs[precision][stage]
        except KeyError:
            raise BackendError(f"{self.path}: no {precision} graph for stage '{stage}'") from None

    def stage_precisions(self, precision: str) -> dict[str, str]:
        """stage -> what it computes in, for the graph set ``precision``."""
        return {s: self.graph(precision, s).computes for s in STAGE_ORDER}

    def graph_path(self, precision: str, stage: str) -> Path:
        return (self.root or Path(".")) / self.graph(precision, stage).onnx.file

    # -- (de)serialisation --------------------------------------------------------------------

    @classmethod
    def from_dict(cls, d: dict[str, Any], root: Path) -> "Manifest":
        path = root / MANIFEST_NAME
        try:
            graphs = {
                prec: {
                    stage: GraphEntry(
                        stage=g["stage"],
                        precision=g["precision"],
                        onnx=FileEntry(**g["onnx"]),
                        external_data=[FileEntry(**f) for f in g.get("external_data", [])],
                        io=g["io"],
                        float32_islands=list(g.get("float32_islands", [])),
                        quantization=g.get("quantization"),
                    )
                    for stage, g in by_stage.items()
                }
                for prec, by_stage in d["graphs"].items()
            }
            return cls(
                config=d["config"],
                checkpoint=d.get("checkpoint", {}),
                opset=int(d["opset"]),
                graphs=graphs,
                tools=d.get("tools", {}),
                created=d.get("created", ""),
                parity=d.get("parity"),
                format=d["format"],
                root=root,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise BackendError(f"{path}: malformed manifest ({type(e).__name__}: {e})") from None


def read_manifest(root: str | Path, *, check_files: bool = True, check_hashes: bool = True) -> Manifest:
    """Read and validate ``root/manifest.json``.

    Checks, each failing with one :class:`BackendError` line: the folder and
    manifest exist, the format version is this one, every graph is listed for
    every stage with the I/O of :mod:`avs_engine.artifacts.spec`, every listed file
    exists with the recorded size and (``check_hashes``) sha256.
    """
    root = Path(root)
    if not root.is_dir():
        raise BackendError(f"{root}: engine folder not found")
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise BackendError(f"{root}: no {MANIFEST_NAME} here (write one with avs-export onnx --out {root})")
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BackendError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(d, dict):
        raise BackendError(f"{path}: malformed manifest (expected a JSON object)")
    fmt = d.get("format")
    if fmt != FORMAT:
        raise BackendError(
            f"{path}: manifest format '{fmt}' is not the one this avs-engine reads ('{FORMAT}'); "
            "re-export with this version's avs-export onnx"
        )
    m = Manifest.from_dict(d, root)
    if not m.graphs:
        raise BackendError(f"{path}: lists no graphs")
    for prec, by_stage in m.graphs.items():
        if prec not in PRECISIONS:
            raise BackendError(f"{path}: unknown precision '{prec}' (expected one of {', '.join(PRECISIONS)})")
        missing = [s for s in STAGE_ORDER if s not in by_stage]
        if missing:
            raise BackendError(f"{path}: {prec} graphs lack stage(s) {', '.join(missing)}")
        for stage in STAGE_ORDER:
            g = by_stage[stage]
            want = io_spec(STAGES[stage])
            if g.io != want:
                raise BackendError(
                    f"{path}: {prec} graph '{stage}' declares I/O {_names(g.io)}, this avs-engine expects {_names(want)}"
                )
            if check_files:
                for f in g.files():
                    _check_file(root, f, check_hashes)
    return m


def _names(io: dict[str, Any]) -> str:
    try:
        return f"{[t['name'] for t in io['inputs']]} -> {[t['name'] for t in io['outputs']]} with shapes " + str(
            [t["shape"] for t in io["inputs"] + io["outputs"]]
        )
    except (KeyError, TypeError):
        return repr(io)


def _check_file(root: Path, f: FileEntry, check_hash: bool) -> None:
    p = root / f.file
    if not p.is_file():
        raise BackendError(f"{p}: graph file listed in {root / MANIFEST_NAME} is missing")
    size = p.stat().st_size
    if size != f.bytes:
        raise BackendError(f"{p}: {size} bytes, the manifest says {f.bytes} (changed since export?); re-export")
    if check_hash and sha256_file(p) != f.sha256:
        raise BackendError(f"{p}: sha256 does not match the manifest (changed since export?); re-export")
