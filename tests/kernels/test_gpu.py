"""The CUDA kernels on a GPU (marked ``gpu``; skipped without CUDA and cuda-python).

Small shapes, fast; the full-size checks and timings are ``benchmarks/gpu_check.py``.
Outputs are pre-filled with NaN: every element must be written.
"""

import pytest
import torch

pytestmark = pytest.mark.gpu


def _gpu_reason():
    if not torch.cuda.is_available():
        return "no CUDA GPU"
    try:
        from cuda.bindings import driver, nvrtc  # noqa: F401
    except ImportError:
        return "cuda-python not installed"
    return None


if _gpu_reason():
    pytest.skip(_gpu_reason(), allow_module_level=True)

from avs_engine.exact import torch_ops  # noqa: E402
from avs_engine.kernels import launchers  # noqa: E402
from avs_engine.exact.fused_fusion import FusedAVFusionBlock, TorchAttentionOps  # noqa: E402

from .test_fused_fusion import inputs, make_block, rel_l2  # noqa: E402

A = torch_ops.as_array


def max_err(x, ref):
    return (x.double() - ref.double()).abs().max().item()


def nan(*shape, dtype=torch.float32):
    return torch.full(shape, float("nan"), dtype=dtype, device="cuda")


@pytest.mark.parametrize("T", [1, 5, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_stbava_kernels(T, dtype):
    C, H, N = 256, 8, 1000
    block = FusedAVFusionBlock(make_block(C, H, torch.float64, T)).cuda()
    a, v, ape, vpe = (x.cuda() for x in inputs(T, N, C, torch.float64, T))
    with torch.no_grad():
        m_a, beta, values = block.fold_temporal_audio(a, ape)
        ya = (a + ape)[:, 0]
        m_tv, m_sv = block.fold_temporal_visual(ya), block.fold_spatial_visual(ya)
    val_v = torch.randn_like(v)
    k = launchers.StbavaKernels(T, H, C)
    vl, vpel, vall = v.to(dtype), vpe.to(dtype), val_v.to(dtype)
    f32 = lambda x: x.float().contiguous()  # noqa: E731
    s = torch_ops.stream_of(vl)
    m32, b32, val32, mtv32, msv32 = (f32(x) for x in (m_a, beta, values, m_tv, m_sv))

    pbar, out = nan(T, H * T), nan(T, C)
    ws = nan(k.temporal_audio_workspace(N))
    k.temporal_audio(A(vl), A(vpel), A(m32), A(b32), A(val32), A(pbar), A(out), A(ws), s)
    ref = TorchAttentionOps.temporal_audio(vl.double(), vpel.double(), m_a, beta, values, H)
    pt = TorchAttentionOps.temporal_audio(vl, vpel, m_a.to(dtype), beta.to(dtype), values.to(dtype), H)
    torch.cuda.synchronize()
    assert torch.isfinite(out).all() and torch.isfinite(pbar).all()
    assert max_err(out, ref) <= 2 * max_err(pt, ref) + 1e-6

    out = nan(T, N, C, dtype=dtype)
    k.temporal_visual(A(vl), A(vpel), A(vall), A(mtv32), A(out), s)
    ref = TorchAttentionOps.temporal_visual(vl.double(), vpel.double(), vall.double(), m_tv, H)
    pt = TorchAttentionOps.temporal_visual(vl, vpel, vall, m_tv.to(dtype), H)
    torch.cuda.synchronize()
    assert torch.isfinite(out).all()
    assert max_err(out, ref) <= 2 * max_err(pt, ref) + 1e-6

    out = nan(T, H, C)
    ws = nan(k.spatial_visual_workspace(N))
    k.spatial_visual(A(vl), A(vpel), A(msv32), A(out), A(ws), s)
    ref = TorchAttentionOps.spatial_visual(vl.double(), vpel.double(), m_sv, H)
    pt = TorchAttentionOps.spatial_visual(vl, vpel, m_sv.to(dtype), H)
    torch.cuda.synchronize()
    assert torch.isfinite(out).all()
    assert max_err(out, ref) <= 2 * max_err(pt, ref) + 1e-6


@pytest.mark.parametrize("D", [64, 80])
@pytest.mark.parametrize("grid", [64, 20])  # 64: key-row tiles; 20: general grid, partial tiles
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_relpos_flash(D, grid, dtype):
    B, heads = 2, 3
    L = grid * grid
    g = torch.Generator().manual_seed(D + grid)
    qkv = torch.randn(B, L, 3, heads, D, generator=g).to("cuda", dtype)
    rph, rpw = (0.3 * torch.randn(2 * grid - 1, D, generator=g)).cuda(), (0.3 * torch.randn(2 * grid - 1, D, generator=g)).cuda()
    q, k, v = qkv.unbind(2)
    rel_h, rel_w = torch_ops.decomposed_rel_tables(q, rph, rpw, (grid, grid), (grid, grid))
    out = nan(B, L, heads, D, dtype=dtype)
    launchers.RelPosAttention()(A(q), A(k), A(v), A(rel_h), A(rel_w), A(out), (grid, grid), (grid, grid), D**-0.5,
                                torch_ops.stream_of(q))
    torch.cuda.synchronize()
    assert torch.isfinite(out).all()
    j = torch.arange(L, device="cuda")
    bias = rel_h[:, :, j // grid] + rel_w[:, :, j % grid]  # [B*heads, L, L]
    qb, kb, vb = (x.permute(0, 2, 1, 3).reshape(B * heads, L, D) for x in (q, k, v))

    def attend(dt):
        s = (qb.to(dt) * D**-0.5) @ kb.to(dt).transpose(1, 2) + bias.to(dt)
        return s.softmax(-1) @ vb.to(dt)

    ref, pt = attend(torch.float32), attend(dtype)
    got = out.permute(0, 2, 1, 3).reshape(B * heads, L, D)
    assert max_err(got, ref) <= 2 * max_err(pt, ref)


def test_use_cuda_kernels_tiny_model():
    from avs_engine.reference import build_model

    model = build_model("tiny", seed=0).cuda()
    T, C, G = 5, model.config.fusion.dim, model.config.grid
    enc, a128 = torch.randn(T, C, G, G, device="cuda"), torch.randn(T, model.config.audio.embed_dim, device="cuda")
    with torch.inference_mode():
        dense_ref, sparse_ref = model.fuse(enc, a128)
        torch_ops.use_cuda_kernels(model)
        dense, sparse = model.fuse(enc, a128)
    assert rel_l2(dense, dense_ref) < 1e-5 and rel_l2(sparse, sparse_ref) < 1e-5


def test_fused_block_matches_reference_on_gpu():
    block = make_block(256, 8, torch.float32, 0).cuda()
    fast = torch_ops.CudaFusedAVFusionBlock(block)
    args = tuple(x.cuda() for x in inputs(5, 4096, 256, torch.float32, 0))
    with torch.inference_mode():
        (v_ref, a_ref), (v, a) = block(*args), fast(*args)
    assert rel_l2(v, v_ref) < 1e-5 and rel_l2(a, a_ref) < 1e-5
