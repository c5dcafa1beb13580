"""Queries in blocks of grid rows: SAM's image-encoder attention, with no [heads, N, N] tensor."""

import numpy as np
import onnx
import pytest
import torch

from avs_engine.exact.blocked_attention import BlockedAttention
from avs_engine.exact.relpos_matmul import MAX_FOLDED_COORDS

from .test_relpos_matmul import make_attention, rel_l2


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("H,W,rows", [(40, 40, 8), (36, 44, 16), (48, 20, 5), (34, 34, 34 // 2 + 1)])
def test_equals_sam_attention(dtype, tol, H, W, rows):
    attn = make_attention(32, 2, max(H, W), seed=H * W + rows, dtype=dtype)
    blocked = BlockedAttention(attn, rows=rows)
    assert not blocked.folds(H, W) and H + W > MAX_FOLDED_COORDS
    x = torch.randn(2, H, W, 32, generator=torch.Generator().manual_seed(rows), dtype=torch.float64).to(dtype)
    with torch.no_grad():
        assert rel_l2(blocked(x), attn(x)) < tol


def test_small_grids_take_the_folded_form_and_parameters_are_shared():
    attn = make_attention(32, 2, 14, seed=3)
    blocked = BlockedAttention(attn, rows=4)
    x = torch.randn(3, 14, 14, 32)
    with torch.no_grad():
        torch.testing.assert_close(blocked(x), attn(x), rtol=1e-5, atol=1e-6)
    assert blocked.state_dict().keys() == attn.state_dict().keys()
    assert blocked.rel_pos_h is attn.rel_pos_h and blocked.qkv is attn.qkv


def _largest_intermediate(path) -> int:
    """Elements of the largest tensor inside an ONNX graph, a symbolic dim (the clip length T,
    alone or folded into a batch*heads axis) counted as 1: the per-frame size. A tensor whose
    shape is unknown counts as 0, so the graph must carry shapes (the dynamo exporter writes them)."""
    m = onnx.load(str(path))
    sizes = [0]
    for vi in list(m.graph.value_info) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims:
            sizes.append(int(np.prod([d.dim_value if d.HasField("dim_value") else 1 for d in dims])))
    return max(sizes)


@pytest.mark.parametrize("blocked", [False, True])
def test_exported_graph_has_no_full_score_matrix(tmp_path, blocked):
    """The exported block's largest tensor is one query block's scores, not [heads, N, N]
    (SAM's form, exported the same way, has it: the check can fail)."""
    import onnxruntime as ort

    from avs_engine.export.onnx_export import _quiet

    H = W = 40
    heads, N, rows = 2, H * W, 8
    attn = make_attention(32, heads, H, seed=7)
    module = BlockedAttention(attn, rows=rows) if blocked else attn
    x = torch.randn(1, H, W, 32)
    path = tmp_path / "attn.onnx"
    with _quiet(), torch.no_grad():
        torch.onnx.export(module, (x,), dynamo=True, input_names=["x"], output_names=["y"], verbose=False).save(str(path))
    largest = _largest_intermediate(path)
    if blocked:
        assert largest == heads * rows * W * N
    else:
        assert largest >= heads * N * N
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        assert rel_l2(torch.from_numpy(y), attn(x)) < 1e-5
