"""The kernels' CUDA C++ itself, run on the CPU by kernels/emulator (no GPU here).

The same launchers, structs, grids and blocks as on a GPU; every CUDA thread a
fiber; mma.sync / ldmatrix / shuffles as the PTX ISA defines them. Errors are
measured against float64 references on fresh random inputs, with partial tiles.
"""

import numpy as np
import pytest
import torch

from devtools import emulator
from avs_engine.kernels.launchers import DeviceArray, TemporalAudioCombineParams
from avs_engine.errors import CudaError
from avs_engine.exact.torch_ops import CudaAttentionOps, CudaFusedAVFusionBlock, CudaRelPosAttention

from .test_fused_fusion import inputs, make_block, rel_l2
from .test_torch_glue import KERNELS, sam_attention

pytestmark = pytest.mark.skipif(emulator.unavailable_reason() is not None, reason=f"CPU emulator: {emulator.unavailable_reason()}")


@pytest.fixture(autouse=True)
def kernel_cache(tmp_path_factory, monkeypatch):
    """One build cache for the session (each module is a host-compiler run of a few seconds)."""
    monkeypatch.setenv("AVS_KERNEL_CACHE", str(tmp_path_factory.getbasetemp() / "kernel_cache"))


@pytest.mark.parametrize("T", [1, 3, 5])
def test_fused_block_on_emulated_kernels(T):
    """T=3: the temporal visual kernel runs 96-thread blocks (a partial warp); N=150: partial tiles."""
    block = make_block(64, 8, torch.float32, T)
    ops = CudaAttentionOps(emulator.EmulatedStbavaKernels)
    fast = CudaFusedAVFusionBlock(block, ops)
    args = inputs(T, 150, 64, torch.float32, T)
    with torch.inference_mode():
        (v_ref, a_ref), (v, a) = block.double()(*(x.double() for x in args)), fast.float()(*args)
    assert rel_l2(v.double(), v_ref) < 1e-5 and rel_l2(a.double(), a_ref) < 1e-5
    (kernels,) = [k for k in ops._cache.values() if k is not None]
    assert kernels.launches == [k.format("f32") for k in KERNELS]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_block_low_precision_on_emulated_kernels(dtype):
    """Within 2x the error of the reference block run in the same precision by PyTorch."""
    block = make_block(64, 8, torch.float32, 11)
    args = inputs(5, 100, 64, torch.float32, 11)
    with torch.inference_mode():
        v_ref, a_ref = block.double()(*(x.double() for x in args))
        v_low, a_low = make_block(64, 8, dtype, 11)(*(x.to(dtype) for x in args))
        fast = CudaFusedAVFusionBlock(make_block(64, 8, dtype, 11), CudaAttentionOps(emulator.EmulatedStbavaKernels))
        v, a = fast(*(x.to(dtype) for x in args))
    assert rel_l2(v.double(), v_ref) <= 2 * rel_l2(v_low.double(), v_ref)
    assert rel_l2(a.double(), a_ref) <= 2 * rel_l2(a_low.double(), a_ref)


def _array(a: np.ndarray, name: str) -> DeviceArray:
    return DeviceArray(a.ctypes.data, a.shape, tuple(s // a.itemsize for s in a.strides), str(a.dtype), name)


@pytest.mark.parametrize("splits", [1, 3, 7])
def test_spatial_split_merge_on_emulated_kernels(splits):
    """Uneven pixel runs per warp (N=1000 over splits x 8 warps), some warps empty; vs float64."""
    T, H, C, N = 2, 4, 64, 1000
    k = emulator.EmulatedStbavaKernels(T, H, C)
    rng = np.random.default_rng()
    v, vpe = rng.standard_normal((T, N, C)).astype(np.float32), rng.standard_normal((N, C)).astype(np.float32)
    m = (rng.standard_normal((T, C, H)) * 0.3).astype(np.float32)
    out = np.full((T, H, C), np.nan, np.float32)
    work = np.full(k.spatial_visual_workspace(N) * 8, np.nan, np.float32)
    k.spatial_visual(_array(v, "v"), _array(vpe, "vpe"), _array(m, "m"), _array(out, "out"), _array(work, "ws"), 0,
                     num_splits=splits)
    s = np.einsum("tnc,tch->thn", (v + vpe).astype(np.float64), m.astype(np.float64))
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    want = np.einsum("thn,tnc->thc", p, v.astype(np.float64))
    assert np.isfinite(out).all()  # every output element written
    assert np.linalg.norm(out - want) / np.linalg.norm(want) < 1e-5


@pytest.mark.parametrize("D", [64, 80])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_global_attention_on_emulated_kernel(D, dtype):
    """mma.sync + ldmatrix fragments, online softmax, rel-pos bias: within 2x PyTorch's own
    error at that precision, against float64. 16x16 grid: 256 keys in 4 tiles of 64."""
    attn = sam_attention(D)
    x = torch.randn(2, 16, 16, 2 * D)
    kernel = emulator.EmulatedRelPosAttention()
    fast = CudaRelPosAttention(attn, dtype, kernel)
    with torch.inference_mode():
        ref = attn.double()(x.double())
        torch_low = attn.to(dtype)(x.to(dtype)).double()
        fast.to(dtype)
        out = fast(x.to(dtype)).double()
    assert kernel.launches == [f"relpos_flash_attn_{'f16' if dtype == torch.float16 else 'bf16'}_d{D}"]
    assert rel_l2(out, ref) <= 2 * rel_l2(torch_low, ref)


@pytest.mark.parametrize("q_size,k_size", [((9, 7), (9, 7)), ((2, 64), (2, 64))])
def test_global_attention_grids_on_emulated_kernel(q_size, k_size):
    """A 9x7 grid (63 tokens: one partial query block and key tile, the general bias path)
    and a 64-wide grid (key tile = key row: SAM's fast path); vs a float64 NumPy reference."""
    B, heads, D = 1, 2, 64
    Lq, Lk = q_size[0] * q_size[1], k_size[0] * k_size[1]
    rng = np.random.default_rng()
    q, k_, v = (rng.standard_normal((B, L, heads, D)).astype(np.float16) for L in (Lq, Lk, Lk))
    rel_h = (rng.standard_normal((B * heads, Lq, k_size[0])) * 0.5).astype(np.float32)
    rel_w = (rng.standard_normal((B * heads, Lq, k_size[1])) * 0.5).astype(np.float32)
    out = np.full((B, Lq, heads, D), np.nan, np.float16)
    kernel = emulator.EmulatedRelPosAttention()
    scale = D**-0.5
    kernel(_array(q, "q"), _array(k_, "k"), _array(v, "v"), _array(rel_h, "rel_h"), _array(rel_w, "rel_w"),
           _array(out, "out"), q_size, k_size, scale, 0)
    qh, kh, vh = (a.astype(np.float64).transpose(0, 2, 1, 3).reshape(B * heads, -1, D) for a in (q, k_, v))
    kh_idx, kw_idx = np.divmod(np.arange(Lk), k_size[1])
    s = scale * qh @ kh.transpose(0, 2, 1) + rel_h[:, :, kh_idx] + rel_w[:, :, kw_idx]
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    want = (p @ vh).reshape(B, heads, Lq, D).transpose(0, 2, 1, 3)
    assert np.isfinite(out).all()  # every row written, padded rows and keys masked
    assert np.linalg.norm(out - want) / np.linalg.norm(want) < 2e-3  # float16 P and output rounding


def test_emulator_reports_kernel_errors():
    """A launch the kernel cannot serve is one clear error, not a crash or a hang."""
    k = emulator.EmulatedStbavaKernels(2, 4, 64)
    with pytest.raises(CudaError, match="no kernel"):
        k.temporal.launch("temporal_visual_f64", (1, 1, 1), (32, 1, 1), 0, None)
    with pytest.raises(CudaError, match="block of 2048 threads"):
        k._launch("temporal_audio_combine", (1, 1, 1), (2048, 1, 1), 0, 0, TemporalAudioCombineParams())
