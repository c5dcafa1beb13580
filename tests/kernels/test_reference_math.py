"""The NumPy models of the kernels (same tiles, same reduction orders) against float64."""

import re

import numpy as np
import pytest
import torch

from avs_engine.kernels import reference_math as rm
from avs_engine.kernels.nvrtc import CSRC


def rel(x, ref) -> float:
    return float(np.linalg.norm(np.asarray(x, np.float64) - ref) / np.linalg.norm(ref))


def constexpr(source: str, name: str) -> int:
    return int(re.search(rf"constexpr int {name} = (\d+);", (CSRC / source).read_text()).group(1))


def test_tile_constants_match_sources():
    assert rm.AUDIO_PIXELS == constexpr("temporal_attention.cu", "kAudioPixels")
    assert rm.SPATIAL_WARPS == constexpr("spatial_attention.cu", "kWarps")
    assert rm.MAX_SPLITS == constexpr("spatial_attention.cu", "kMaxSplits")
    assert rm.BLOCK_ROWS == constexpr("relpos_flash_attention.cu", "kBr")
    assert rm.BLOCK_KEYS == constexpr("relpos_flash_attention.cu", "kBc")
    src = (CSRC / "temporal_attention.cu").read_text()
    assert "kVisPixels = (kT <= 5) ? 32 : 16" in src and rm.temporal_geometry(5)[1:] == (32, 160)
    assert rm.temporal_geometry(8)[1:] == (16, 128)


def test_round_to_matches_torch():
    x = np.random.default_rng(0).standard_normal(10000).astype(np.float32) * 100
    for name, dt in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        want = torch.from_numpy(x).to(dt).float().numpy()
        np.testing.assert_array_equal(rm.round_to(x, name), want)


def test_butterfly_sum_is_a_sum():
    x = np.random.default_rng(1).standard_normal((3, 32)).astype(np.float32)
    np.testing.assert_allclose(rm.butterfly_sum(x), x.astype(np.float64).sum(-1), rtol=1e-6)


def inputs(T, N, C, H, seed=0):
    g = np.random.default_rng(seed)
    v = g.standard_normal((T, N, C)).astype(np.float32)
    vpe = g.standard_normal((N, C)).astype(np.float32)
    return g, v, vpe


@pytest.mark.parametrize("T,N", [(1, 77), (5, 300), (8, 129)])
def test_temporal_audio_model(T, N):
    C, H = 64, 8
    g, v, vpe = inputs(T, N, C, H, T)
    m = (g.standard_normal((C, H * T)) * 0.3).astype(np.float32)
    beta = g.standard_normal(H * T).astype(np.float32)
    values = g.standard_normal((T, C)).astype(np.float32)
    pbar, out = rm.temporal_audio(v, vpe, m, beta, values, H)
    # float64: scores, softmax over the audio keys, mean over pixels, values
    x = v.astype(np.float64) + vpe
    s = (x @ m.astype(np.float64)).reshape(T, N, H, T) + beta.reshape(H, T)
    p = np.exp(s - s.max(-1, keepdims=True))
    p = (p / p.sum(-1, keepdims=True)).mean(1)  # [t, h, s]
    ref = np.einsum("ths,shd->thd", p, values.astype(np.float64).reshape(T, H, C // H)).reshape(T, C)
    assert rel(pbar, p.reshape(T, H * T)) < 1e-6
    assert rel(out, ref) < 1e-6


@pytest.mark.parametrize("T,dtype,tol", [(1, "float32", 1e-6), (5, "float32", 1e-6), (8, "float32", 1e-6),
                                         (5, "float16", 1e-3), (5, "bfloat16", 8e-3)])
def test_temporal_visual_model(T, dtype, tol):
    C, H, N = 64, 8, 50
    g, v, vpe = inputs(T, N, C, H, T)
    values = g.standard_normal((T, N, C)).astype(np.float32)
    m = (g.standard_normal((C, H * T)) * 0.3).astype(np.float32)
    out = rm.temporal_visual(v, vpe, values, m, H, dtype)
    v, vpe, values = (rm.round_to(a, dtype).astype(np.float64) for a in (v, vpe, values))
    s = ((v + vpe) @ m.astype(np.float64)).reshape(T, N, H, T)  # [s, n, h, t]
    p = np.exp(s - s.max(0, keepdims=True))
    p /= p.sum(0, keepdims=True)
    ref = np.einsum("snht,snhd->tnhd", p, values.reshape(T, N, H, C // H)).reshape(T, N, C)
    assert rel(out, ref) < tol


@pytest.mark.parametrize("N,splits", [(300, None), (37, 1), (1000, 3), (20, 4)])
def test_spatial_visual_model(N, splits):
    """Online softmax per warp, block merge, split combine (including empty warps and splits)."""
    T, C, H = 2, 64, 4
    g, v, vpe = inputs(T, N, C, H, N)
    m = (g.standard_normal((T, C, H)) * 0.5).astype(np.float32)
    out = rm.spatial_visual(v, vpe, m, H, num_splits=splits)
    s = np.einsum("tnc,tch->thn", v.astype(np.float64) + vpe, m)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ref = np.einsum("thn,tnc->thc", p, v.astype(np.float64))
    assert rel(out, ref) < 1e-6


def sam_attention_inputs(B, heads, D, grid, seed):
    g = np.random.default_rng(seed)
    L = grid * grid
    q, k, v = (g.standard_normal((B * heads, L, D)).astype(np.float32) for _ in range(3))
    rel_pos_h = (g.standard_normal((2 * grid - 1, D)) * 0.3).astype(np.float32)
    rel_pos_w = (g.standard_normal((2 * grid - 1, D)) * 0.3).astype(np.float32)
    return q, k, v, rel_pos_h, rel_pos_w


@pytest.mark.parametrize("D", [64, 80])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("grid", [16, 9])  # 9x9 = 81 keys: partial key and query tiles, general key grid
def test_flash_model(D, dtype, grid):
    q, k, v, rh, rw = sam_attention_inputs(2, 1, D, grid, D + grid)
    scale = D**-0.5
    qr, kr, vr = (rm.round_to(a, dtype) for a in (q, k, v))
    rel_h, rel_w = rm.relpos_bias_tables(qr, rh, rw, (grid, grid), (grid, grid))
    out = rm.relpos_flash_attention(q, k, v, rel_h, rel_w, (grid, grid), (grid, grid), scale, dtype)
    ref = rm.attention_reference(qr, kr, vr, rel_h, rel_w, (grid, grid), scale)
    # the same attention computed naively at that precision: scores and P in the input type
    naive = torch.from_numpy(qr).to(getattr(torch, dtype))
    s = (naive * scale) @ torch.from_numpy(kr).to(naive.dtype).transpose(1, 2)
    j = np.arange(grid * grid)
    s = s + torch.from_numpy(rel_h[:, :, j // grid] + rel_w[:, :, j % grid]).to(naive.dtype)
    naive = (s.float().softmax(-1).to(naive.dtype) @ torch.from_numpy(vr).to(naive.dtype)).double().numpy()
    assert rel(out, ref) <= 2 * rel(naive, ref) + 1e-4


def test_relpos_tables_match_sam():
    """rel_h / rel_w as SAM's add_decomposed_rel_pos adds them."""
    from segment_anything.modeling.image_encoder import add_decomposed_rel_pos

    grid, D = 6, 16
    q, k, _, rh, rw = sam_attention_inputs(2, 1, D, grid, 3)
    rel_h, rel_w = rm.relpos_bias_tables(q, rh, rw, (grid, grid), (grid, grid))
    zero = torch.zeros(2, grid * grid, grid * grid, dtype=torch.float64)
    want = add_decomposed_rel_pos(zero, torch.from_numpy(q).double(), torch.from_numpy(rh).double(),
                                  torch.from_numpy(rw).double(), (grid, grid), (grid, grid)).numpy()
    j = np.arange(grid * grid)
    got = rel_h[:, :, j // grid] + rel_w[:, :, j % grid]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
