"""Graphs' manifest entries and the files each consists of (torch-free: adding INT8 graphs to an
existing export needs no PyTorch)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import onnx

from ..artifacts.graph_manifest import FileEntry, GraphEntry, io_spec
from ..artifacts.spec import STAGE_ORDER, STAGES


def external_data_files(path: Path) -> list[Path]:
    """The external-data files an ONNX file refers to (read without loading them)."""
    return [path.parent / loc for loc in external_data_locations(onnx.load(str(path), load_external_data=False))]


def external_data_locations(model: onnx.ModelProto) -> list[str]:
    """The external-data file names (relative to the graph's folder) a model loaded without its data refers to."""
    tensors = list(model.graph.initializer) + [
        a.t for n in model.graph.node for a in n.attribute if a.type == onnx.AttributeProto.TENSOR
    ]
    return sorted({
        e.value
        for t in tensors
        if t.data_location == onnx.TensorProto.EXTERNAL
        for e in t.external_data
        if e.key == "location"
    })


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


def int8_entries(root: Path, files: dict[str, Path], records: dict[str, dict]) -> dict[str, GraphEntry]:
    """The manifest's ``int8`` set: stage -> entry of the graph it runs (its INT8 graph, or the FP32 graph
    where it stayed fp32), with the stage's ``quantization`` record."""
    entries = {}
    for stage in STAGE_ORDER:
        entry = graph_entry(root, stage, "int8", [files[stage], *external_data_files(files[stage])])
        entry.quantization = records[stage]
        entries[stage] = entry
    return entries
