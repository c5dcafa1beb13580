"""A small, fast stand-in for an ``avs-export onnx`` folder: four hand-built ONNX graphs with the
I/O of :mod:`avs_engine.artifacts.spec` for the tiny preset (T dynamic) and a real ``manifest.json``.

Made with ``onnx.helper`` in well under a second (the real exporter takes ~25 s on 2 cores), so
the check and build paths can be tested here on every run. The maths is arbitrary (matmuls, a
strided conv, a resize); only names, shapes and dtypes follow the spec. The ``trt`` group uses
the real export instead.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from avs_engine.config import from_name
from avs_engine.artifacts.graph_manifest import FileEntry, GraphEntry, Manifest, io_spec
from avs_engine.artifacts.spec import STAGE_ORDER, STAGES, dims_for

OPSET = 18


def _init(rng, name, shape, scale=0.05):
    return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name)


def _const(name, values, dtype=np.int64):
    return numpy_helper.from_array(np.asarray(values, dtype=dtype), name)


def _io(stage, dims):
    """Value infos with T symbolic and every other axis as the config fixes it."""
    vi = lambda t: helper.make_tensor_value_info(t.name, TensorProto.FLOAT, [d if d == "T" or isinstance(d, int) else dims[d] for d in t.shape])  # noqa: E731
    return [vi(t) for t in STAGES[stage].inputs], [vi(t) for t in STAGES[stage].outputs]


def graphs(config, seed: int = 0) -> dict[str, onnx.ModelProto]:
    d = dims_for(config, 1)
    S, G, C, A, L = d["S"], d["G"], d["C"], d["A"], d["L"]
    p = S // G
    rng = np.random.default_rng(seed)
    nodes, inits = {}, {}
    nodes["audio"] = [
        helper.make_node("Flatten", ["log_mel"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w_audio"], ["a128"]),
    ]
    inits["audio"] = [_init(rng, "w_audio", (96 * 64, A), 0.01)]
    nodes["image_encoder"] = [
        helper.make_node("Conv", ["image", "w_patch"], ["patches"], strides=[p, p], kernel_shape=[p, p]),
        helper.make_node("MatMul", ["a128", "w_adapt"], ["adapt"]),
        helper.make_node("Unsqueeze", ["adapt", "axes23"], ["adapt4"]),
        helper.make_node("Add", ["patches", "adapt4"], ["enc"]),
    ]
    inits["image_encoder"] = [_init(rng, "w_patch", (C, 3, p, p)), _init(rng, "w_adapt", (A, C)), _const("axes23", [2, 3])]
    nodes["fusion"] = [
        helper.make_node("MatMul", ["a128", "w_a"], ["a"]),
        helper.make_node("Unsqueeze", ["a", "axes23"], ["a4"]),
        helper.make_node("Mul", ["enc", "a4"], ["mixed"]),
        helper.make_node("Add", ["enc", "mixed"], ["dense"]),
        helper.make_node("MatMul", ["a128", "w_sparse"], ["sp"]),
        helper.make_node("Reshape", ["sp", "sparse_shape"], ["sparse"]),
    ]
    inits["fusion"] = [_init(rng, "w_a", (A, C)), _init(rng, "w_sparse", (A, 2 * C)), _const("axes23", [2, 3]),
                       _const("sparse_shape", [-1, 2, C])]
    nodes["mask_decoder"] = [
        helper.make_node("Add", ["enc", "dense"], ["x"]),
        helper.make_node("Conv", ["x", "w_head"], ["low"]),
        helper.make_node("ReduceSum", ["sparse", "axes12"], ["s"], keepdims=0),
        helper.make_node("Reshape", ["s", "s_shape"], ["s4"]),
        helper.make_node("Add", ["low", "s4"], ["low2"]),
        helper.make_node("Resize", ["low2", "", "scales"], ["logits"], mode="nearest"),
    ]
    inits["mask_decoder"] = [_init(rng, "w_head", (1, C, 1, 1), 0.3), _const("axes12", [1, 2]), _const("s_shape", [-1, 1, 1, 1]),
                             numpy_helper.from_array(np.array([1, 1, L / G, L / G], np.float32), "scales")]
    out = {}
    for stage in STAGE_ORDER:
        ins, outs = _io(stage, d)
        g = helper.make_graph(nodes[stage], stage, ins, outs, inits[stage])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="avs-engine tests")
        m.ir_version = 9
        onnx.checker.check_model(m, full_check=True)
        out[stage] = m
    return out


def write_onnx_folder(root: Path, preset: str = "tiny", precisions=("fp32", "fp16"), seed: int = 0) -> Path:
    """``root/manifest.json`` + ``root/<precision>/<stage>.onnx`` (the same float32 graphs under each precision)."""
    config = from_name(preset)
    root = Path(root)
    models = graphs(config, seed)
    entries = {}
    for prec in precisions:
        entries[prec] = {}
        for stage, m in models.items():
            path = root / prec / f"{stage}.onnx"
            path.parent.mkdir(parents=True, exist_ok=True)
            onnx.save_model(m, str(path))
            entries[prec][stage] = GraphEntry(stage=stage, precision=prec, onnx=FileEntry.of(root, path), io=io_spec(STAGES[stage]))
    Manifest(config=config.to_dict(), checkpoint={"random_seed": seed}, opset=OPSET, graphs=entries,
             tools={"made_by": "tests/trt/graphs.py"},
             created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")).write(root)
    return root
