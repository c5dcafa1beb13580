"""qkv before the padding, proj after the crop: SAM's windowed encoder block, same function."""

import numpy as np
import onnx
import pytest
import torch
from segment_anything.modeling.image_encoder import Block

from avs_engine.checks.compare import rel_l2
from avs_engine.exact.relpos_matmul import RelPosMatmulAttention
from avs_engine.exact.windowed_block import WindowedBlock, is_windowed


def make_block(dim: int, heads: int, window: int, size: int, seed: int, dtype=torch.float32) -> Block:
    torch.manual_seed(seed)
    block = Block(dim, heads, use_rel_pos=True, window_size=window, input_size=(size, size))
    with torch.no_grad():  # SAM initialises the tables to zero; a large bias makes the padded keys count
        block.attn.rel_pos_h.normal_(0, 0.5)
        block.attn.rel_pos_w.normal_(0, 0.5)
        block.attn.qkv.bias.normal_(0, 1.0)
    return block.eval().to(dtype)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize(
    "dim,heads,window,H,W",
    [
        (64, 4, 14, 32, 32),  # padded on both sides (32 -> 42), as SAM's 64x64 grid with 14x14 windows
        (32, 2, 8, 16, 16),  # no padding (the tiny preset's windows)
        (32, 2, 5, 12, 9),  # padded differently in height and width
        (48, 3, 7, 7, 7),  # one window
        (32, 2, 20, 9, 9),  # one padded window larger than the grid, SAM's unfolded form inside
    ],
)
def test_equals_sam_block(dtype, tol, dim, heads, window, H, W):
    block = make_block(dim, heads, window, max(H, W), seed=H * W + window, dtype=dtype)
    fast = WindowedBlock(block)
    x = torch.randn(2, H, W, dim, generator=torch.Generator().manual_seed(window), dtype=torch.float64).to(dtype)
    with torch.no_grad():
        assert rel_l2(fast(x), block(x)) < tol


def test_padded_keys_still_count():
    """The padded tokens are keys and values (their qkv is the bias): dropping them changes the output,
    so the equality above covers them."""
    block = make_block(32, 2, 5, 12, seed=1)
    x = torch.randn(1, 12, 12, 32)
    with torch.no_grad():
        full = WindowedBlock(block)(x)
        block.attn.qkv.bias.zero_()
        assert rel_l2(WindowedBlock(block)(x), block(x)) < 1e-5  # still equal with another bias
        assert rel_l2(WindowedBlock(block)(x), full) > 1e-2  # and the bias mattered


def test_shares_parameters_and_keys_and_refuses_global_blocks():
    block = make_block(32, 2, 8, 16, seed=2)
    fast = WindowedBlock(block)
    assert list(fast.state_dict()) == list(block.state_dict())
    assert all(a is b for a, b in zip(fast.parameters(), block.parameters()))
    assert fast.attn.qkv is block.attn.qkv and fast.mlp is block.mlp and fast.attn.rel_pos_h is block.attn.rel_pos_h
    assert is_windowed(block) and not is_windowed(fast)
    folded = WindowedBlock(block)
    assert isinstance(folded.attn, RelPosMatmulAttention)
    with pytest.raises(ValueError, match="window_size"):
        WindowedBlock(Block(32, 2, use_rel_pos=True, window_size=0, input_size=(16, 16)))


def test_exported_block_runs_qkv_on_real_tokens_only(tmp_path):
    """The exported graph's qkv product has H*W rows, not the padded grid's, and matches SAM in ONNX Runtime
    (SAM's block exported the same way multiplies the padded grid: the check can fail)."""
    import onnxruntime as ort

    from avs_engine.export.onnx_export import _quiet

    dim, H = 32, 12
    block = make_block(dim, 2, 5, H, seed=3)  # 12 -> 15 padded
    x = torch.randn(2, H, H, dim)
    rows = {}
    for name, module in (("sam", block), ("windowed", WindowedBlock(block))):
        path = tmp_path / f"{name}.onnx"
        with _quiet(), torch.no_grad():
            torch.onnx.export(module, (x,), dynamo=True, input_names=["x"], output_names=["y"],
                              opset_version=20, verbose=False).save(str(path))
        m = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
        weights = {t.name: list(t.dims) for t in m.graph.initializer}
        shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim] for vi in m.graph.value_info}
        qkv_out = [n.output[0] for n in m.graph.node  # the product with the [dim, 3*dim] weight
                   if n.op_type in ("MatMul", "Gemm") and any(weights.get(i) == [dim, 3 * dim] for i in n.input)]
        assert qkv_out, "no qkv product found"
        rows[name] = int(np.prod(shapes[qkv_out[0]][:-1]))
        y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
        with torch.no_grad():
            assert rel_l2(torch.from_numpy(y), block(x)) < 1e-5
    assert rows == {"sam": 2 * 15 * 15, "windowed": 2 * H * H}
