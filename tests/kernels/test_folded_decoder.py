"""The folded mask-decoder attention equals SAM's ``Attention`` and the whole decoder."""

import copy

import pytest
import torch
from segment_anything.modeling.transformer import Attention

from avs_engine.exact.folded_decoder import FoldedAttention, fold_decoder_attention
from avs_engine.reference import build_model
from avs_engine.reference.mask_decoder import decode_frames
from avs_engine.checks.compare import rel_l2



def make_attention(C: int, H: int, downsample: int, seed: int, dtype=torch.float32) -> Attention:
    torch.manual_seed(seed)
    attn = Attention(C, H, downsample_rate=downsample)
    with torch.no_grad():
        for lin in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj):
            lin.bias.normal_(0, 0.3)  # nn.Linear's default biases are small; make them count
    return attn.eval().to(dtype)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("B", [1, 5])
@pytest.mark.parametrize("C,H,down,few,many", [(256, 8, 2, 7, 4096), (64, 4, 2, 7, 256), (32, 2, 1, 3, 100)])
def test_both_folded_directions_equal_sam_attention(dtype, tol, B, C, H, down, few, many):
    attn = make_attention(C, H, down, seed=C + few, dtype=dtype)
    folded = FoldedAttention(attn)
    g = torch.Generator().manual_seed(B * 1000 + C)
    r = lambda *s: (2 * torch.randn(*s, generator=g, dtype=torch.float64)).to(dtype)  # noqa: E731
    tokens_q, tokens_v = r(B, few, C), r(B, few, C)
    image_k, image_v = r(B, many, C), r(B, many, C)
    with torch.no_grad():
        # image -> tokens: many queries over few keys; tokens -> image: few queries over many keys
        for q, k, v, branch in ((image_k, tokens_q, tokens_v, "few_keys"), (tokens_q, image_k, image_v, "few_queries")):
            want = attn(q, k, v)
            assert rel_l2(getattr(folded, branch)(q, k, v), want) < tol
            assert rel_l2(folded(q, k, v), want) < tol


def test_equal_lengths_run_sams_own_order():
    attn = make_attention(64, 4, 1, seed=3)
    x = torch.randn(2, 7, 64)
    with torch.no_grad():
        assert torch.equal(FoldedAttention(attn)(x, x, x), attn(x, x, x))


def test_folding_only_when_the_short_side_is_short_enough():
    attn = make_attention(32, 8, 2, seed=4)  # internal 16: 8 heads x 3 keys = 24 > 16, no gain
    folded = FoldedAttention(attn)
    q, kv = torch.randn(1, 50, 32), torch.randn(1, 3, 32)
    assert folded.branch(50, 3) == "plain" and FoldedAttention(make_attention(32, 4, 2, seed=4)).branch(50, 3) == "few_keys"
    with torch.no_grad():
        assert torch.equal(folded(q, kv, kv), attn(q, kv, kv))


@pytest.mark.parametrize("T", [1, 5])
def test_folded_decoder_equals_reference_decoder(T):
    model = build_model("tiny", seed=T)
    dec = model.mask_decoder
    folded = fold_decoder_attention(copy.deepcopy(dec))
    n_folded = sum(isinstance(m, FoldedAttention) for m in folded.modules())
    assert n_folded == sum(type(m) is Attention for m in dec.modules()) > 0
    assert folded.state_dict().keys() == dec.state_dict().keys()
    C, G = model.config.fusion.dim, model.config.grid
    g = torch.Generator().manual_seed(T)
    enc, dense = torch.randn(T, C, G, G, generator=g), torch.randn(T, C, G, G, generator=g)
    sparse = torch.randn(T, 2, C, generator=g)
    with torch.no_grad():
        pe = model.dense_pe()
        want = decode_frames(dec, enc, dense, sparse, pe)
        got = decode_frames(folded, enc, dense, sparse, pe)
    assert rel_l2(got, want) < 1e-5
