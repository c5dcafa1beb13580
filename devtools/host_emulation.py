"""Run the launchers on the CPU: the kernels replaced by their NumPy models.

:class:`HostStbavaKernels` and :class:`HostRelPosAttention` are the launchers
of ``launchers.py`` with one change: ``_launch`` reads the filled parameter
struct (raw pointers and strides, here into host memory), checks the grid and
block the launcher chose, runs the kernel's model from ``reference_math`` and
writes every output through the struct's pointers. Everything a GPU run does
except the device code itself: validation, struct filling, pointer and stride
plumbing of ``torch_ops``. Tests and ``benchmarks/gpu_check.py --dry-run`` use it.
"""

from __future__ import annotations

import ctypes

import numpy as np

from avs_engine.kernels import reference_math as rm
from avs_engine.kernels.launchers import RelPosAttention, StbavaKernels

_ITEM = {"f32": 4, "f16": 2, "bf16": 2}
_NP = {"f32": np.float32, "f16": np.float16, "bf16": np.uint16}
_DTYPE = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}


def host_view(ptr: int, shape, strides, suffix: str) -> np.ndarray:
    """A writable NumPy view of host memory at ``ptr`` (strides in elements)."""
    item = _ITEM[suffix]
    span = 1 + sum((n - 1) * s for n, s in zip(shape, strides)) if all(shape) else 0
    buf = (ctypes.c_char * (span * item)).from_address(ptr)
    base = np.frombuffer(buf, dtype=_NP[suffix])
    return np.lib.stride_tricks.as_strided(base, tuple(shape), tuple(s * item for s in strides))


def read(ptr: int, shape, strides, suffix: str = "f32") -> np.ndarray:
    a = host_view(ptr, shape, strides, suffix)
    if suffix == "bf16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32)


def write(ptr: int, shape, strides, suffix: str, values: np.ndarray) -> None:
    a = host_view(ptr, shape, strides, suffix)
    if suffix == "bf16":
        a[...] = (rm.round_to(values, "bfloat16").view(np.uint32) >> 16).astype(np.uint16)
    else:
        a[...] = values.astype(_NP[suffix])


def _contig(*shape: int) -> tuple[int, ...]:
    strides, acc = [], 1
    for n in reversed(shape):
        strides.append(acc)
        acc *= n
    return tuple(reversed(strides))


class HostStbavaKernels(StbavaKernels):
    """StbavaKernels whose launches run ``reference_math`` on host pointers."""

    def __init__(self, T: int, H: int, C: int) -> None:  # no module: nothing to load
        self.check_shape(T, H, C)
        self.T, self.H, self.C = T, H, C
        self.audio_pixels, self.vis_pixels, self.vis_threads = rm.temporal_geometry(T)
        self.warps, self.spatial_threads, self.max_splits = rm.SPATIAL_WARPS, 32 * rm.SPATIAL_WARPS, rm.MAX_SPLITS
        self.launches: list[str] = []

    def _launch(self, name: str, grid, block, smem: int, stream: int, p) -> None:
        self.launches.append(name)
        suffix = name.rsplit("_", 1)[-1]
        T, H, C = self.T, self.H, self.C
        HT = H * T
        assert (p.T, p.C, p.H) == (T, C, H), f"{name}: struct sizes"
        if name.startswith("temporal_audio_partial"):
            N = p.N
            assert grid == (-(-N // rm.AUDIO_PIXELS), T, 1) and block == (rm.AUDIO_PIXELS, 1, 1), (grid, block)
            assert p.num_tiles == grid[0]
            v = read(p.v, (T, N, C), (p.v_frame_stride, p.v_pixel_stride, 1), suffix)
            vpe = read(p.vpe, (N, C), (p.vpe_pixel_stride, 1), suffix)
            m = read(p.m, (C, HT), _contig(C, HT))
            beta = read(p.beta, (HT,), (1,))
            partial = rm.temporal_audio_partial(v, vpe, m, beta, H, _DTYPE[suffix])
            write(p.partial, partial.shape, _contig(*partial.shape), "f32", partial)
        elif name == "temporal_audio_combine":
            assert grid == (T, 1, 1) and block[0] >= HT, (grid, block)
            partial = read(p.partial, (T, p.num_tiles, HT), _contig(T, p.num_tiles, HT))
            values = read(p.values, (T, C), _contig(T, C))
            pbar, out = rm.temporal_audio_combine(partial, values, p.N, H)
            write(p.pbar, (T, HT), _contig(T, HT), "f32", pbar)
            write(p.out, (T, C), _contig(T, C), "f32", out)
        elif name.startswith("temporal_visual"):
            N = p.N
            assert grid == (-(-N // self.vis_pixels), 1, 1) and block == (self.vis_threads, 1, 1), (grid, block)
            v = read(p.v, (T, N, C), (p.v_frame_stride, p.v_pixel_stride, 1), suffix)
            vpe = read(p.vpe, (N, C), (p.vpe_pixel_stride, 1), suffix)
            values = read(p.values, (T, N, C), (p.values_frame_stride, p.values_pixel_stride, 1), suffix)
            m = read(p.m, (C, HT), _contig(C, HT))
            out = rm.temporal_visual(v, vpe, values, m, H, _DTYPE[suffix])
            write(p.out, (T, N, C), (p.out_frame_stride, p.out_pixel_stride, 1), suffix, out)
        elif name.startswith("spatial_visual_partial"):
            N, S = p.N, p.num_splits
            assert grid == (S, T, 1) and block == (self.spatial_threads, 1, 1), (grid, block)
            assert p.pixels_per_warp == -(-N // (S * rm.SPATIAL_WARPS))
            v = read(p.v, (T, N, C), (p.v_frame_stride, p.v_pixel_stride, 1), suffix)
            vpe = read(p.vpe, (N, C), (p.vpe_pixel_stride, 1), suffix)
            m = read(p.m, (T, C, H), _contig(T, C, H))
            pmax, psum, pacc = rm.spatial_visual_partial(v, vpe, m, H, _DTYPE[suffix], S)
            write(p.partial_max, pmax.shape, _contig(*pmax.shape), "f32", pmax)
            write(p.partial_sum, psum.shape, _contig(*psum.shape), "f32", psum)
            write(p.partial_acc, pacc.shape, _contig(*pacc.shape), "f32", pacc)
        elif name == "spatial_visual_combine":
            S = p.num_splits
            assert grid == (T, 1, 1), grid
            pmax = read(p.partial_max, (T, S, H), _contig(T, S, H))
            psum = read(p.partial_sum, (T, S, H), _contig(T, S, H))
            pacc = read(p.partial_acc, (T, S, H, C), _contig(T, S, H, C))
            out = rm.spatial_visual_combine(pmax, psum, pacc)
            write(p.out, (T, H, C), _contig(T, H, C), "f32", out)
        else:
            raise AssertionError(f"unknown kernel {name}")


class HostRelPosAttention(RelPosAttention):
    """RelPosAttention whose launch runs ``reference_math.relpos_flash_attention`` on host pointers."""

    def __init__(self) -> None:  # no module
        self.block_rows, self.block_keys, self.threads, self.max_rel = rm.BLOCK_ROWS, rm.BLOCK_KEYS, 128, 64
        self.launches: list[str] = []

    def _launch(self, name: str, grid, block, stream: int, p) -> None:
        self.launches.append(name)
        suffix = name.split("_")[3]  # relpos_flash_attn_<f16|bf16>_d<D>
        D = int(name.rsplit("_d", 1)[-1])
        B, heads = p.B, p.heads
        Lq, Lk = p.q_h * p.q_w, p.k_h * p.k_w
        assert grid == (-(-Lq // rm.BLOCK_ROWS), B * heads, 1) and block == (self.threads, 1, 1), (grid, block)

        def bhld(ptr, L, sb, st, sh):  # [B, L, heads, D] -> [B*heads, L, D]
            a = read(ptr, (B, L, heads, D), (sb, st, sh, 1), suffix)
            return a.transpose(0, 2, 1, 3).reshape(B * heads, L, D)

        q = bhld(p.q, Lq, p.q_batch_stride, p.q_token_stride, p.q_head_stride)
        k = bhld(p.k, Lk, p.k_batch_stride, p.k_token_stride, p.k_head_stride)
        v = bhld(p.v, Lk, p.v_batch_stride, p.v_token_stride, p.v_head_stride)
        rel_h = read(p.rel_h, (B * heads, Lq, p.k_h), (p.rel_h_bh_stride, p.k_h, 1))
        rel_w = read(p.rel_w, (B * heads, Lq, p.k_w), (p.rel_w_bh_stride, p.k_w, 1))
        out = rm.relpos_flash_attention(q, k, v, rel_h, rel_w, (p.q_h, p.q_w), (p.k_h, p.k_w), p.scale, _DTYPE[suffix])
        out = out.reshape(B, heads, Lq, D).transpose(0, 2, 1, 3)
        write(p.out, (B, Lq, heads, D), (p.o_batch_stride, p.o_token_stride, p.o_head_stride, 1), suffix, out)
