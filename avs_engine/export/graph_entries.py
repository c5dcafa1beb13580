"""A graph's manifest entry and the files it consists of (torch-free: adding INT8 graphs to an
existing export needs no PyTorch)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import onnx

from ..artifacts.graph_manifest import FileEntry, GraphEntry, io_spec
from ..artifacts.spec import STAGES


def external_data_files(path: Path) -> list[Path]:
    """The external-data files an ONNX file refers to (read without loading them)."""
    m = onnx.load(str(path), load_external_data=False)
    tensors = list(m.graph.initializer) + [
        a.t for n in m.graph.node for a in n.attribute if a.type == onnx.AttributeProto.TENSOR
    ]
    locations = {
        e.value
        for t in tensors
        if t.data_location == onnx.TensorProto.EXTERNAL
        for e in t.external_data
        if e.key == "location"
    }
    return [path.parent / loc for loc in sorted(locations)]


def graph_entry(root: Path, stage: str, precision: str, files: list[Path], islands: Iterable[str] = ()) -> GraphEntry:
    """The manifest entry of ``stage``'s graph: ``files`` = [the .onnx file, its external-data files...],
    paths and hashes relative to ``root``."""
    return GraphEntry(
        stage=stage,
        precision=precision,
        onnx=FileEntry.of(root, files[0]),
        external_data=[FileEntry.of(root, f) for f in files[1:]],
        io=io_spec(STAGES[stage]),
        float32_islands=list(islands),
    )
