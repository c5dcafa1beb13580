"""split_long_reductions: same maths, float32 error no longer growing with the axis length."""

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx import TensorProto, helper

from avs_engine.export.graph_passes import split_long_reductions
from avs_engine.checks.onnx_parity import rel_l2


def mean_graph(n: int, axis: int = 1) -> ir.Model:
    """y = ReduceMean(x, axes=[axis], keepdims=1), x [T, n, 64] with T dynamic."""
    g = helper.make_graph(
        [helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", n, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["T", 1, 64])],
        initializer=[onnx.numpy_helper.from_array(np.array([axis], np.int64), "axes")],
    )
    return ir.serde.deserialize_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)]))


def run(model: ir.Model, x: np.ndarray) -> np.ndarray:
    proto = ir.serde.serialize_model(model)
    onnx.checker.check_model(proto, full_check=True)
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_mean_of_identical_rows_stays_exact():
    """The fusion's spatial audio update averages 4096 copies of one row."""
    rng = np.random.default_rng(0)
    row = rng.uniform(0.1, 3.0, (3, 1, 64)).astype(np.float32)
    x = np.repeat(row, 4096, axis=1)  # [3, 4096, 64]
    want = x.astype(np.float64).mean(1, keepdims=True)
    plain = run(mean_graph(4096), x)
    model = mean_graph(4096)
    assert split_long_reductions(model) == 1
    split = run(model, x)
    assert [n.op_type for n in model.graph] == ["Reshape", "ReduceMean", "ReduceMean"]
    assert split.shape == want.shape
    assert rel_l2(split, want) < 1e-6
    assert rel_l2(split, want) < rel_l2(plain, want)
    # the dynamic T survives: another clip length runs
    assert run(model, x[:1]).shape == (1, 1, 64)


def test_short_or_unsplittable_axes_are_left_alone():
    assert split_long_reductions(mean_graph(256)) == 0  # tiny preset: 16x16 pixels
    assert split_long_reductions(mean_graph(1031)) == 0  # prime: no useful split
