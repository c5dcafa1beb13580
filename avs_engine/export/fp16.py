"""FP32 ONNX -> FP16 ONNX with float32 islands (docs/graphs.md).

TensorRT 11 builds only strongly typed networks, so precision must live in
the ONNX file: every float tensor becomes float16 except the ops listed in
``FLOAT32_ISLANDS``, which get Cast nodes around them and run in float32.
Graph inputs and outputs stay float32 (a Cast at entry and exit), so every
precision has the I/O of :mod:`avs_engine.artifacts.spec`.

The island list was chosen by measurement (``benchmarks/fp16_islands.py``,
report in ``benchmarks/fp16_islands.md``): per graph, relative L2 error
against FP32 and non-finite outputs, at the inputs' normal scale and scaled
up to provoke overflow, for each candidate list.

Weights are rounded to float16 with ONNX Runtime's converter
(``onnxruntime.transformers.float16``), which clamps to +-65504 and maps
|w| < 6e-8 to the smallest float16 subnormal (sign kept), not to zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import onnx

# Measured (benchmarks/fp16_islands.md, tiny and vit_b, inputs x1 and x100):
# - LayerNormalization: a row's sum of squares is 1e3 on vit_b at x1 and 3e6-8e6
#   at x100, past float16's 65504; keeping it float32 halves the fusion's and
#   decoder's FP16 error on vit_b (1.2e-3 -> 6.2e-4, 1.2e-3 -> 9.5e-4).
# - Reductions: the fusion averages 4096 pixels; float32 ReduceMean already
#   needed a two-stage split (graph_passes.py) to stay at 1e-6, float16
#   accumulation of 4096 terms would not. Their outputs are tiny: the Casts cost nothing.
# - Softmax: no measurable change on ONNX Runtime CPU (logits <= 3.1e4 even at x100;
#   max-subtracted exp cannot overflow). Kept in float32 until TensorRT is
#   measured: dropping it would let TensorRT fuse FP16 attention.
FLOAT32_ISLANDS: tuple[str, ...] = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "ReduceL2")


def convert_fp16(
    src: str | Path,
    islands: Sequence[str] = FLOAT32_ISLANDS,
) -> onnx.ModelProto:
    """The FP16 version of the FP32 graph at ``src`` (external data next to it is read).

    ``islands``: op types kept in float32.
    """
    # ONNX Runtime's converter (a maintained fork of onnxconverter-common's).
    # Importing onnxruntime.transformers appends its folder to sys.path (their side effect).
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    # A path (not a ModelProto) lets it run shape inference on graphs over 2 GB.
    model = convert_float_to_float16(
        str(src),
        keep_io_types=True,
        op_block_list=sorted(set(DEFAULT_OP_BLOCK_LIST) | set(islands)),
    )
    # The converter appends its input Casts at the end; the ONNX checker and
    # TensorRT's parser want producers before consumers.
    topological_sort(model.graph)
    # It leaves value_info typed float16 for initialisers that islands keep in
    # float32; those entries are redundant, and wrong: drop them.
    initialisers = {t.name for t in model.graph.initializer}
    keep = [v for v in model.graph.value_info if v.name not in initialisers]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)
    return model


def topological_sort(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` in place so that every node comes after the producers of its inputs."""
    produced_by = {out: i for i, n in enumerate(graph.node) for out in n.output if out}
    pending = [sum(1 for x in set(n.input) if x in produced_by) for n in graph.node]
    consumers: dict[int, list[int]] = {}
    for i, n in enumerate(graph.node):
        for x in set(n.input):
            if x in produced_by:
                consumers.setdefault(produced_by[x], []).append(i)
    ready = [i for i, k in enumerate(pending) if k == 0]
    order: list[int] = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for j in consumers.get(i, []):
            pending[j] -= 1
            if pending[j] == 0:
                ready.append(j)
    assert len(order) == len(graph.node), "graph has a cycle"
    nodes = [graph.node[i] for i in order]
    del graph.node[:]
    graph.node.extend(nodes)
