"""The rel-pos bias inside the score matmul equals SAM's image-encoder attention."""

import pytest
import torch
from segment_anything.modeling.image_encoder import Attention

from avs_engine.exact.relpos_matmul import MAX_FOLDED_COORDS, RelPosMatmulAttention
from avs_engine.checks.compare import rel_l2



def make_attention(dim: int, heads: int, size: int, seed: int, dtype=torch.float32) -> Attention:
    torch.manual_seed(seed)
    attn = Attention(dim, heads, use_rel_pos=True, input_size=(size, size))
    with torch.no_grad():  # SAM initialises the tables to zero: make the bias count
        attn.rel_pos_h.normal_(0, 0.5)
        attn.rel_pos_w.normal_(0, 0.5)
    return attn.eval().to(dtype)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("dim,heads,H,W", [(64, 4, 8, 8), (128, 2, 14, 14), (64, 4, 16, 16), (32, 2, 5, 9)])
def test_equals_sam_attention(dtype, tol, dim, heads, H, W):
    attn = make_attention(dim, heads, max(H, W), seed=H * W, dtype=dtype)
    x = torch.randn(3, H, W, dim, generator=torch.Generator().manual_seed(dim), dtype=torch.float64).to(dtype)
    fast = RelPosMatmulAttention(attn)
    assert fast.folds(H, W)
    with torch.no_grad():
        assert rel_l2(fast(x), attn(x)) < tol


def test_large_grids_keep_sams_form_and_parameters_are_shared():
    attn = make_attention(32, 2, 40, seed=1)
    fast = RelPosMatmulAttention(attn)
    assert not fast.folds(40, 40) and 40 + 40 > MAX_FOLDED_COORDS
    x = torch.randn(1, 40, 40, 32)
    with torch.no_grad():
        assert torch.equal(fast(x), attn(x))
    assert fast.state_dict().keys() == attn.state_dict().keys()
    assert fast.rel_pos_h is attn.rel_pos_h and fast.qkv is attn.qkv
