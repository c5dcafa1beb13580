"""ST-BAVA fusion block against an independent float64 implementation of the block
as docs/model.md (section 6) describes it.

The hand-written block below uses only plain torch ops: per-head q/k/v
projections sliced from ``in_proj_weight``/``in_proj_bias``, an explicit
softmax, einsums over pixels and frames, ``out_proj``, and LayerNorm/GELU
written out. Every parameter (LayerNorm weights/biases and the attention
biases included, which PyTorch initialises to 1/0) is randomised so that
no term can vanish unnoticed.
"""

import math

import pytest
import torch

from avs_engine.reference import build_model
from avs_engine.reference.fusion import AVFusionBlock

TOL = 1e-10  # float64 module vs float64 hand implementation


# -- the hand implementation --------------------------------------------------------------


def layer_norm(x, ln, eps=1e-5):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * ln.weight + ln.bias


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def mlp(x, m):
    h = gelu(x @ m.lin1.weight.T + m.lin1.bias)
    return h @ m.lin2.weight.T + m.lin2.bias


def attention(q_in, k_in, v_in, mha):
    """Multi-head attention, written out. q_in [B,Lq,C], k_in/v_in [B,Lk,C] -> [B,Lq,C].

    B is whatever the caller batches over (pixels or frames); each of the B
    problems is independent."""
    C = q_in.shape[-1]
    H = mha.num_heads
    d = C // H
    W, b = mha.in_proj_weight, mha.in_proj_bias
    Wq, Wk, Wv = W[:C], W[C : 2 * C], W[2 * C :]
    bq, bk, bv = b[:C], b[C : 2 * C], b[2 * C :]
    heads = []
    for h in range(H):
        s = slice(h * d, (h + 1) * d)
        q = q_in @ Wq[s].T + bq[s]  # [B, Lq, d]
        k = k_in @ Wk[s].T + bk[s]  # [B, Lk, d]
        v = v_in @ Wv[s].T + bv[s]  # [B, Lk, d]
        scores = torch.einsum("bqd,bkd->bqk", q, k) / math.sqrt(d)
        e = torch.exp(scores - scores.max(dim=-1, keepdim=True).values)
        p = e / e.sum(dim=-1, keepdim=True)
        heads.append(torch.einsum("bqk,bkd->bqd", p, v))
    o = torch.cat(heads, dim=-1)
    return o @ mha.out_proj.weight.T + mha.out_proj.bias


def temporal_audio_update(a, v, ape, vpe, blk):
    """Per pixel n: T visual queries (v+vpe)[:, n] over T audio keys a+ape (values a);
    then the mean over pixels. -> [T,1,C]."""
    T, N, C = v.shape
    q = (v + vpe).transpose(0, 1)  # [N, T, C]: batch = pixels, sequence = frames
    k = (a + ape)[:, 0][None].expand(N, T, C)
    val = a[:, 0][None].expand(N, T, C)
    return attention(q, k, val, blk.avt_attention).mean(dim=0)[:, None, :]


def spatial_audio_update(a, v, ape, vpe, blk):
    """Per frame: N visual queries over the frame's one audio key; mean over pixels."""
    return attention(v + vpe, a + ape, a, blk.avs_attention).mean(dim=1, keepdim=True)


def temporal_visual_update(a, v, ape, vpe, blk):
    """Per pixel n: T audio queries a+ape over that pixel's T visual keys. -> [T,N,C]."""
    T, N, C = v.shape
    q = (a + ape)[:, 0][None].expand(N, T, C)
    k = (v + vpe).transpose(0, 1)
    val = v.transpose(0, 1)
    return attention(q, k, val, blk.avt_attention).transpose(0, 1)


def spatial_visual_update(a, v, ape, vpe, blk):
    """Per frame: one audio query over the N visual keys. -> [T,1,C] (added to every pixel)."""
    return attention(a + ape, v + vpe, v, blk.avs_attention)


def reference_block(a, v, ape, vpe, blk):
    """One block as docs/model.md describes it. a [T,1,C], v [T,N,C], ape [T,1,C], vpe [1,N,C]."""
    a = layer_norm(a + mlp(a, blk.embed_audio), blk.norm1)
    v = layer_norm(v + mlp(v, blk.embed_vis), blk.norm2)
    a = layer_norm(a + temporal_audio_update(a, v, ape, vpe, blk), blk.norm3_1)
    a = layer_norm(a + spatial_audio_update(a, v, ape, vpe, blk), blk.norm3_2)
    a = layer_norm(a + mlp(a, blk.embed_audio2), blk.norm4)
    v = layer_norm(v + temporal_visual_update(a, v, ape, vpe, blk), blk.norm5_1)
    v = layer_norm(v + spatial_visual_update(a, v, ape, vpe, blk), blk.norm5_2)
    v = layer_norm(v + mlp(v, blk.embed_av), blk.norm6)
    return v, a


# -- fixtures -----------------------------------------------------------------------------


def randomise_(module, seed):
    """Every parameter random; scale 1/sqrt(fan-in) for matrices keeps softmax away from saturation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) / math.sqrt(p.shape[-1]))
            elif name.endswith("weight"):  # LayerNorm gains around 1
                p.copy_(1.0 + 0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def make_block(dim=32, heads=4, mlp_dim=48, seed=0):
    blk = AVFusionBlock(dim, heads, mlp_dim, dropout=0.1).double().eval()
    return randomise_(blk, seed)


def make_inputs(T, N, C, seed):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    a = torch.nn.functional.normalize(r(T, 1, C), dim=-1)
    return a, r(T, N, C), a.clone(), r(1, N, C)


# -- tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 2, 5])
@pytest.mark.parametrize("dim,heads,mlp_dim", [(32, 4, 32), (64, 8, 48)])
def test_block_equals_hand_implementation(T, dim, heads, mlp_dim):
    blk = make_block(dim, heads, mlp_dim, seed=T * 7 + dim)
    N = 36
    a, v, ape, vpe = make_inputs(T, N, dim, seed=T + dim)
    ape = ape + 0.1 * torch.randn(ape.shape, dtype=torch.float64)  # ape need not equal a inside one block
    with torch.no_grad():
        v_mod, a_mod = blk(a, v, ape, vpe)
        v_ref, a_ref = reference_block(a, v, ape, vpe, blk)
    assert v_mod.shape == (T, N, dim) and a_mod.shape == (T, 1, dim)
    torch.testing.assert_close(v_mod, v_ref, rtol=0, atol=TOL)
    torch.testing.assert_close(a_mod, a_ref, rtol=0, atol=TOL)


def test_block_in_eval_mode_is_deterministic_and_dropout_exists():
    """The authors run eval(): dropout (0.1 in both attentions) is off."""
    blk = make_block(seed=3)
    assert blk.avt_attention.dropout == 0.1 and blk.avs_attention.dropout == 0.1
    a, v, ape, vpe = make_inputs(3, 16, 32, seed=3)
    with torch.no_grad():
        out1, out2 = blk(a, v, ape, vpe), blk(a, v, ape, vpe)
    assert torch.equal(out1[0], out2[0]) and torch.equal(out1[1], out2[1])


def test_attention_layouts():
    """avt is sequence-first (sequence = frames, batch = pixels); avs is batch-first (batch = frames)."""
    blk = make_block(seed=1)
    assert blk.avt_attention.batch_first is False
    assert blk.avs_attention.batch_first is True


# Each direction on its own, against the module's own attention called as the authors call it.


def test_temporal_audio_update_is_per_pixel_attention_averaged():
    T, N, C = 5, 24, 32
    blk = make_block(seed=11)
    a, v, ape, vpe = make_inputs(T, N, C, seed=11)
    mha = blk.avt_attention
    with torch.no_grad():
        full = mha(v + vpe, (a + ape).expand(T, N, C), a.expand(T, N, C))[0]  # [T, N, C]
        # One pixel at a time: a batch of one, sequence = the T frames.
        per_pixel = torch.stack(
            [mha((v + vpe)[:, n : n + 1], a + ape, a)[0][:, 0] for n in range(N)], dim=1
        )
        torch.testing.assert_close(full, per_pixel, rtol=0, atol=TOL)
        ref = temporal_audio_update(a, v, ape, vpe, blk)
        torch.testing.assert_close(full.mean(dim=1, keepdim=True), ref, rtol=0, atol=TOL)

        # The exact-algebra form (docs/graphs.md): keys/values from the T shared audio tokens only (not T*N),
        # and the pixel mean taken before out_proj.
        W, b = mha.in_proj_weight, mha.in_proj_bias
        H, d = mha.num_heads, C // mha.num_heads
        q = ((v + vpe) @ W[:C].T + b[:C]).view(T, N, H, d)
        k = ((a + ape)[:, 0] @ W[C : 2 * C].T + b[C : 2 * C]).view(T, H, d)  # T tokens projected once
        val = (a[:, 0] @ W[2 * C :].T + b[2 * C :]).view(T, H, d)
        p = torch.softmax(torch.einsum("tnhd,shd->nhts", q, k) / math.sqrt(d), dim=-1)  # [N, H, Tq, Tk]
        mean_heads = torch.einsum("nhts,shd->thd", p, val) / N  # mean over pixels before out_proj
        fast = mha.out_proj(mean_heads.reshape(T, C))[:, None]
        torch.testing.assert_close(fast, ref, rtol=0, atol=TOL)


def test_spatial_audio_update_is_out_proj_of_v_proj():
    """One key per frame: the softmax is identically 1, so every query gets out_proj(v_proj(a))."""
    T, N, C = 3, 20, 32
    blk = make_block(seed=12)
    a, v, ape, vpe = make_inputs(T, N, C, seed=12)
    mha = blk.avs_attention
    with torch.no_grad():
        upd = mha(v + vpe, a + ape, a)[0]  # [T, N, C]
        Wv, bv = mha.in_proj_weight[2 * C :], mha.in_proj_bias[2 * C :]
        expect = mha.out_proj(a @ Wv.T + bv)  # [T, 1, C]
        torch.testing.assert_close(upd, expect.expand(T, N, C), rtol=0, atol=TOL)
        torch.testing.assert_close(upd.mean(1, keepdim=True), spatial_audio_update(a, v, ape, vpe, blk), rtol=0, atol=TOL)
        # The visual queries do not matter at all.
        other = mha(torch.randn(T, N, C, dtype=torch.float64), a + ape, a)[0]
        torch.testing.assert_close(other, upd, rtol=0, atol=TOL)


def test_temporal_visual_update():
    T, N, C = 4, 18, 32
    blk = make_block(seed=13)
    a, v, ape, vpe = make_inputs(T, N, C, seed=13)
    mha = blk.avt_attention
    with torch.no_grad():
        upd = mha((a + ape).expand(T, N, C), v + vpe, v)[0]  # as the authors call it
        # Explicit loop over pixels: the T audio queries attend over this pixel's T visual keys.
        loop = torch.stack(
            [attention((a + ape)[:, 0][None], (v + vpe)[:, n][None], v[:, n][None], mha)[0] for n in range(N)],
            dim=1,
        )
        torch.testing.assert_close(upd, loop, rtol=0, atol=TOL)
        torch.testing.assert_close(upd, temporal_visual_update(a, v, ape, vpe, blk), rtol=0, atol=TOL)


def test_spatial_visual_update():
    T, N, C = 3, 30, 32
    blk = make_block(seed=14)
    a, v, ape, vpe = make_inputs(T, N, C, seed=14)
    mha = blk.avs_attention
    with torch.no_grad():
        upd = mha(a + ape, v + vpe, v)[0]  # [T, 1, C]
        loop = torch.cat([attention((a + ape)[t][None], (v + vpe)[t][None], v[t][None], mha) for t in range(T)])
        assert upd.shape == (T, 1, C)
        torch.testing.assert_close(upd, loop, rtol=0, atol=TOL)
        # Frames do not see each other here: changing frame 0's pixels leaves frames 1.. unchanged.
        v2 = v.clone()
        v2[0] += 1.0
        upd2 = mha(a + ape, v2 + vpe, v2)[0]
        torch.testing.assert_close(upd2[1:], upd[1:], rtol=0, atol=TOL)


@pytest.mark.parametrize("T", [1, 2, 5])
def test_fuse_equals_hand_loop(T):
    """Whole fusion: l2-normalised projected audio; ape = the block-0 input audio in every
    block; after the last block a = a + a_in; two identical sparse tokens."""
    model = build_model("tiny", seed=T).double()
    for k, blk in enumerate(model.layers):
        randomise_(blk, seed=100 + k)
    randomise_(model.audio_embed_layer, seed=7)
    cfg = model.config
    C, G = cfg.fusion.dim, cfg.grid
    g = torch.Generator().manual_seed(200 + T)
    enc = torch.randn(T, C, G, G, generator=g, dtype=torch.float64)
    a128 = torch.randn(T, cfg.audio.embed_dim, generator=g, dtype=torch.float64).relu()
    with torch.no_grad():
        dense, sparse = model.fuse(enc, a128)

        proj = a128 @ model.audio_embed_layer.weight.T + model.audio_embed_layer.bias
        a_in = (proj / proj.norm(dim=-1, keepdim=True))[:, None, :]  # [T, 1, C]
        # SAM's random-Fourier encoding of the grid centres, written out.
        centres = (torch.arange(G, dtype=torch.float64) + 0.5) / G
        yy, xx = torch.meshgrid(centres, centres, indexing="ij")
        coords = 2 * torch.stack([xx, yy], dim=-1) - 1  # [G, G, 2], (x, y)
        phase = 2 * math.pi * coords @ model.pe_layer.positional_encoding_gaussian_matrix
        vpe = torch.cat([phase.sin(), phase.cos()], dim=-1).reshape(1, G * G, C)
        torch.testing.assert_close(model.dense_pe().flatten(2).transpose(1, 2), vpe, rtol=0, atol=TOL)
        v = enc.reshape(T, C, G * G).transpose(1, 2)
        a = a_in
        for blk in model.layers:
            v, a = reference_block(a, v, a_in, vpe, blk)
        a = a + a_in
    torch.testing.assert_close(dense, v.transpose(1, 2).reshape(T, C, G, G), rtol=0, atol=TOL)
    torch.testing.assert_close(sparse, torch.cat([a, a], dim=1), rtol=0, atol=TOL)
