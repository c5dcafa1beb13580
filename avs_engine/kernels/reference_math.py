"""NumPy models of the kernels' exact maths: same tiles, same reduction and combine order.

Each function follows its .cu kernel step by step in float32 (products-with-add
as fused multiply-adds, emulated in float64 then rounded; warp butterflies as
xor-shuffle trees; block and split sums in the kernel's order; the flash
kernel's base-2 online softmax with P rounded to the input type before P V).
They run on the CPU, so the tiling and online-softmax maths are tested
without a GPU, against float64 references, and they index every array exactly
as the kernels do: a wrong layout assumption fails here first.

The tile constants are the .cu files' (a test reads them from the sources).
"""

from __future__ import annotations

import numpy as np

AUDIO_PIXELS = 128  # temporal_attention.cu kAudioPixels
SPATIAL_WARPS = 8  # spatial_attention.cu kWarps
MAX_SPLITS = 128  # spatial_attention.cu kMaxSplits
BLOCK_ROWS = 64  # relpos_flash_attention.cu kBr
BLOCK_KEYS = 64  # relpos_flash_attention.cu kBc
LOG2E = np.float32(1.4426950408889634)

f32 = np.float32


# -- number formats ------------------------------------------------------------------------


def round_to(x: np.ndarray, dtype: str) -> np.ndarray:
    """Round float values to ``dtype`` ("float32" | "float16" | "bfloat16"); returns float32."""
    x = np.asarray(x, dtype=np.float32)
    if dtype == "float32":
        return x
    if dtype == "float16":
        return x.astype(np.float16).astype(np.float32)
    if dtype == "bfloat16":  # round to nearest even on the top 16 bits
        b = x.view(np.uint32).astype(np.uint64)
        b = (b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000
        return b.astype(np.uint32).view(np.float32)
    raise ValueError(f"unknown dtype {dtype}")


def fma(a, b, c) -> np.ndarray:
    """float32 fused multiply-add (the product is exact in float64)."""
    return (np.float64(1) * np.asarray(a, np.float32) * np.asarray(b, np.float32) + np.asarray(c, np.float32)).astype(f32)


def butterfly_sum(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``avs::warp_sum`` over a 32-long axis: xor offsets 16, 8, 4, 2, 1 (result of lane 0)."""
    x = np.moveaxis(np.asarray(x, f32), axis, -1)
    assert x.shape[-1] == 32
    lanes = np.arange(32)
    for o in (16, 8, 4, 2, 1):
        x = (x + x[..., lanes ^ o]).astype(f32)
    return x[..., 0]


def _scores(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """s[..., j] = sum_c x[..., c] m[c, j] as a chain of fmaf over c (the kernels' order)."""
    s = np.zeros(x.shape[:-1] + (m.shape[1],), f32)
    for c in range(x.shape[-1]):
        s = fma(x[..., c, None], m[c], s)
    return s


# -- temporal_attention.cu -------------------------------------------------------------------------


def temporal_geometry(T: int) -> tuple[int, int, int]:
    """(audio pixels per block, visual pixels per block, visual threads) of temporal_attention.cu."""
    vis = 32 if T <= 5 else 16
    return AUDIO_PIXELS, vis, vis * T


def temporal_audio_partial(v, vpe, m, beta, num_heads: int, dtype: str = "float32") -> np.ndarray:
    """temporal_audio_partial_*: v [T,N,C], vpe [N,C], m [C,H*T], beta [H*T]
    -> partial [T, tiles, H*T]: per block of 128 pixels, the sum of the softmax weights."""
    T, N, C = v.shape
    H = num_heads
    HT = H * T
    tiles = -(-N // AUDIO_PIXELS)
    x = np.zeros((T, tiles * AUDIO_PIXELS, C), f32)
    x[:, :N] = round_to(v, dtype) + round_to(vpe, dtype)[None]  # x = v + vpe; padded pixels are 0
    valid = np.arange(tiles * AUDIO_PIXELS) < N
    s = _scores(x, np.asarray(m, f32))  # [T, pixels, HT]
    p = np.empty_like(s)
    for h in range(H):
        cols = slice(h * T, (h + 1) * T)
        sh = (s[..., cols] + np.asarray(beta, f32)[cols]).astype(f32)
        e = np.exp(sh - sh.max(-1, keepdims=True)).astype(f32)
        total = np.zeros(sh.shape[:-1], f32)
        for k in range(T):
            total = (total + e[..., k]).astype(f32)
        inv = np.where(valid[None], f32(1) / total, f32(0)).astype(f32)
        p[..., cols] = e * inv[..., None]
    # per block: butterfly within each warp of 32 pixels, then the 4 warps in order
    warp = butterfly_sum(p.reshape(T, tiles, AUDIO_PIXELS // 32, 32, HT), axis=3)  # [T, tiles, 4, HT]
    partial = np.zeros((T, tiles, HT), f32)
    for w in range(AUDIO_PIXELS // 32):
        partial = (partial + warp[:, :, w]).astype(f32)
    return partial


def temporal_audio_combine(partial, values, N: int, num_heads: int):
    """temporal_audio_combine: tiles in order, / N, then sum_s Pbar val.
    partial [T,tiles,H*T], values [T,C] -> (pbar [T,H*T], out [T,C])."""
    T, tiles, HT = partial.shape
    C = values.shape[1]
    d = C // num_heads
    pbar = np.zeros((T, HT), f32)
    for i in range(tiles):
        pbar = (pbar + partial[:, i]).astype(f32)
    pbar = (pbar / f32(N)).astype(f32)
    out = np.zeros((T, C), f32)
    heads = np.arange(C) // d
    for k in range(T):
        out = fma(pbar[:, heads * T + k], np.asarray(values[k], f32)[None], out)
    return pbar, out


def temporal_audio(v, vpe, m, beta, values, num_heads: int, dtype: str = "float32"):
    """Both kernels: -> (pbar [T,H*T], out [T,C]) float32."""
    partial = temporal_audio_partial(v, vpe, m, beta, num_heads, dtype)
    return temporal_audio_combine(partial, values, v.shape[1], num_heads)


def temporal_visual(v, vpe, values, m, num_heads: int, dtype: str = "float32"):
    """temporal_visual: v, values [T,N,C], vpe [N,C], m [C,H*T] -> out [T,N,C] (rounded to dtype)."""
    T, N, C = v.shape
    H = num_heads
    d = C // H
    x = round_to(v, dtype) + round_to(vpe, dtype)[None]
    s = _scores(x, m.astype(f32))  # [s, n, j]: key frame s, column j = h*T + t
    e = np.exp(s - s.max(0, keepdims=True)).astype(f32)  # softmax over s
    total = np.zeros(s.shape[1:], f32)
    for k in range(T):
        total = (total + e[k]).astype(f32)
    p = (e * (f32(1) / total)[None]).astype(f32)
    val = round_to(values, dtype)
    heads = np.arange(C) // d
    out = np.zeros((T, N, C), f32)
    for t in range(T):
        o = np.zeros((N, C), f32)
        for k in range(T):
            o = fma(p[k][:, heads * T + t], val[k], o)
        out[t] = o
    return round_to(out, dtype)


# -- spatial_attention.cu --------------------------------------------------------------------------


def spatial_splits(N: int) -> int:
    """launchers.StbavaKernels.spatial_splits."""
    return max(1, min(MAX_SPLITS, -(-N // (SPATIAL_WARPS * 16))))


def spatial_visual_partial(v, vpe, m, num_heads: int, dtype: str = "float32", num_splits: int | None = None):
    """spatial_visual_partial_*: v [T,N,C], vpe [N,C], m [T,C,H]
    -> (max [T,S,H], sum [T,S,H], acc [T,S,H,C]) per split (block) S."""
    T, N, C = v.shape
    H = num_heads
    per_lane = C // 32
    splits = num_splits or spatial_splits(N)
    per_warp = -(-N // (splits * SPATIAL_WARPS))
    vv_all = round_to(v, dtype)
    x_all = vv_all + round_to(vpe, dtype)[None]
    ninf = f32(-np.inf)
    pmax = np.full((T, splits, H), ninf, f32)
    psum = np.zeros((T, splits, H), f32)
    pacc = np.zeros((T, splits, H, C), f32)
    for t in range(T):
        mt = np.asarray(m[t], f32).reshape(per_lane, 32, H)  # [i, lane, h]: channel lane + 32 i
        for b in range(splits):
            wm = np.full((SPATIAL_WARPS, H), ninf, f32)
            wl = np.zeros((SPATIAL_WARPS, H), f32)
            wacc = np.zeros((SPATIAL_WARPS, H, C), f32)
            for w in range(SPATIAL_WARPS):
                first = (b * SPATIAL_WARPS + w) * per_warp
                for n in range(first, min(first + per_warp, N)):
                    xl = x_all[t, n].reshape(per_lane, 32)
                    vl = vv_all[t, n]
                    sc = np.zeros((32, H), f32)  # each lane's part, fmaf over its channels
                    for i in range(per_lane):
                        sc = fma(xl[i][:, None], mt[i], sc)
                    s = butterfly_sum(sc, axis=0)  # [H]
                    mn = np.maximum(wm[w], s)
                    corr = np.exp(wm[w] - mn).astype(f32)
                    e = np.exp(s - mn).astype(f32)
                    wl[w] = fma(wl[w], corr, e)
                    wacc[w] = fma(wacc[w], corr[:, None], (e[:, None] * vl[None]).astype(f32))
                    wm[w] = mn
            bm = wm.max(0)
            for w in range(SPATIAL_WARPS):  # block merge: rescale, then add warp by warp
                with np.errstate(invalid="ignore"):
                    corr = np.where(wm[w] == ninf, f32(0), np.exp(wm[w] - bm)).astype(f32)
                psum[t, b] = (psum[t, b] + wl[w] * corr).astype(f32)
                pacc[t, b] = (pacc[t, b] + (wacc[w] * corr[:, None]).astype(f32)).astype(f32)
            pmax[t, b] = bm
    return pmax, psum, pacc


def spatial_visual_combine(pmax, psum, pacc) -> np.ndarray:
    """spatial_visual_combine: -> vbar [T,H,C] = sum_i acc_i e^(m_i-M) / sum_i l_i e^(m_i-M)."""
    T, splits, H, C = pacc.shape
    ninf = f32(-np.inf)
    out = np.zeros((T, H, C), f32)
    for t in range(T):
        mx = pmax[t].max(0)
        with np.errstate(invalid="ignore"):
            weight = np.where(pmax[t] == ninf, f32(0), np.exp(pmax[t] - mx[None])).astype(f32)
        total = np.zeros(H, f32)
        for i in range(splits):
            total = fma(psum[t, i], weight[i], total)
        weight = (weight * (f32(1) / total)[None]).astype(f32)
        o = np.zeros((H, C), f32)
        for i in range(splits):
            o = fma(pacc[t, i], weight[i][:, None], o)
        out[t] = o
    return out


def spatial_visual(v, vpe, m, num_heads: int, dtype: str = "float32", num_splits: int | None = None):
    """Both kernels: v [T,N,C], vpe [N,C], m [T,C,H] -> vbar [T,H,C]."""
    return spatial_visual_combine(*spatial_visual_partial(v, vpe, m, num_heads, dtype, num_splits))


# -- relpos_flash_attention.cu ---------------------------------------------------------------------


def relpos_bias_tables(q, rel_pos_h, rel_pos_w, q_size, k_size):
    """SAM's rel_h [BH,Lq,k_h], rel_w [BH,Lq,k_w] from q [BH,Lq,D] (unscaled) and the
    relative-position tables [2*max-1, D]; the same-size case of ``get_rel_pos`` (no resize)."""
    (q_h, q_w), (k_h, k_w) = q_size, k_size

    def rel(qs, ks, table):
        coords = (np.arange(qs)[:, None] * max(ks / qs, 1.0) - np.arange(ks)[None] * max(qs / ks, 1.0)
                  + (ks - 1) * max(qs / ks, 1.0))
        return table[coords.astype(np.int64)]  # [qs, ks, D]

    Rh, Rw = rel(q_h, k_h, rel_pos_h), rel(q_w, k_w, rel_pos_w)
    r_q = q.reshape(q.shape[0], q_h, q_w, -1)
    rel_h = np.einsum("bhwc,hkc->bhwk", r_q, Rh).reshape(q.shape[0], q_h * q_w, k_h)
    rel_w = np.einsum("bhwc,wkc->bhwk", r_q, Rw).reshape(q.shape[0], q_h * q_w, k_w)
    return rel_h, rel_w


def attention_reference(q, k, v, rel_h, rel_w, k_size, scale):
    """float64: softmax(scale q k^T + rel_h[:, :, kh(j)] + rel_w[:, :, kw(j)]) v for [BH, L, D]."""
    k_h, k_w = k_size
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    s = scale * q @ k.transpose(0, 2, 1)
    j = np.arange(k_h * k_w)
    s = s + np.asarray(rel_h, np.float64)[:, :, j // k_w] + np.asarray(rel_w, np.float64)[:, :, j % k_w]
    s = np.exp(s - s.max(-1, keepdims=True))
    return (s / s.sum(-1, keepdims=True)) @ v


def relpos_flash_attention(q, k, v, rel_h, rel_w, q_size, k_size, scale: float, dtype: str = "float16"):
    """The flash kernel on [BH, L, D] arrays: 64-row query tiles, 64-key tiles, base-2 online
    softmax, per-thread row sums over the columns a quad lane owns (summed over the quad at
    the end), P rounded to ``dtype`` before P V. Returns out [BH, Lq, D] rounded to ``dtype``."""
    (q_h, q_w), (k_h, k_w) = q_size, k_size
    Lq, Lk = q_h * q_w, k_h * k_w
    BH, _, D = q.shape
    q, k, v = (round_to(a, dtype) for a in (q, k, v))
    j_all = np.arange(Lk)
    bias = (rel_h.astype(f32)[:, :, j_all // k_w] + rel_w.astype(f32)[:, :, j_all % k_w]).astype(f32)
    tiles = -(-Lk // BLOCK_KEYS)
    out = np.zeros((BH, Lq, D), f32)
    for q0 in range(0, Lq, BLOCK_ROWS):
        rows = slice(q0, min(q0 + BLOCK_ROWS, Lq))
        qt = q[:, rows]
        R = qt.shape[1]
        m = np.full((BH, R), f32(-np.inf), f32)
        lq = np.zeros((BH, R, 4), f32)  # running sums per quad lane
        o = np.zeros((BH, R, D), f32)
        for tile in range(tiles):
            cols = slice(tile * BLOCK_KEYS, min((tile + 1) * BLOCK_KEYS, Lk))
            n = cols.stop - cols.start
            s = np.full((BH, R, BLOCK_KEYS), f32(-np.inf), f32)
            qk = np.matmul(qt, k[:, cols].transpose(0, 2, 1)).astype(f32)  # tensor-core f32 accumulation
            s[:, :, :n] = (fma(qk, f32(scale), bias[:, rows, cols]) * LOG2E).astype(f32)
            mx = np.maximum(m, s.max(-1))
            base = np.where(mx == -np.inf, f32(0), mx).astype(f32)
            corr = np.exp2(m - base).astype(f32)
            m = mx
            e = np.exp2(s - base[..., None]).astype(f32)
            # column c of a tile belongs to quad lane (c % 8) // 2; each lane: rowsum += e[c] + e[c+1] over its column pairs, in n-tile order
            pairs = (e[..., 0::2] + e[..., 1::2]).astype(f32)  # [BH, R, 32]: pair nt*4 + lane
            rowsum = np.zeros((BH, R, 4), f32)
            for nt in range(BLOCK_KEYS // 8):
                rowsum = (rowsum + pairs[..., nt * 4 : nt * 4 + 4]).astype(f32)
            lq = fma(lq, corr[..., None], rowsum)
            pv = np.matmul(round_to(e[:, :, :n], dtype), v[:, cols]).astype(f32)
            o = (o * corr[..., None] + pv).astype(f32)
        total = ((lq[..., 0] + lq[..., 1]) + (lq[..., 2] + lq[..., 3])).astype(f32)  # xor 1 then xor 2
        out[:, rows] = o * (f32(1) / total)[..., None]
    return round_to(out, dtype)
