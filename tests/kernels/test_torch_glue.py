"""torch_ops + launchers on the CPU: the launch structs are run by the NumPy kernel models
(host_emulation), so everything but the device code is exercised without a GPU."""

import pytest
import torch

from avs_engine.errors import ShapeError
from devtools.host_emulation import HostRelPosAttention, HostStbavaKernels
from avs_engine.kernels.launchers import DeviceArray
from avs_engine.exact.torch_ops import (
    CudaAttentionOps,
    CudaFusedAVFusionBlock,
    CudaRelPosAttention,
    as_array,
    use_cuda_kernels,
)

from .test_fused_fusion import inputs, make_block, randomise, rel_l2

KERNELS = ["temporal_audio_partial_{}", "temporal_audio_combine", "temporal_visual_{}",
           "spatial_visual_partial_{}", "spatial_visual_combine"]


@pytest.mark.parametrize("T", [1, 5, 8])
def test_fused_block_through_launchers(T):
    block = make_block(64, 8, torch.float32, T)
    ops = CudaAttentionOps(HostStbavaKernels)
    fast = CudaFusedAVFusionBlock(block, ops)
    args = inputs(T, 150, 64, torch.float32, T)
    with torch.inference_mode():
        (v_ref, a_ref), (v, a) = block(*args), fast(*args)
    assert rel_l2(v, v_ref) < 1e-5 and rel_l2(a, a_ref) < 1e-5
    (kernels,) = [k for k in ops._cache.values() if k is not None]
    assert kernels.launches == [k.format("f32") for k in KERNELS]


def test_fused_block_half_through_launchers():
    """float16 tokens (what the GPU stage runs): within float16 error of the float32 reference."""
    block = make_block(64, 8, torch.float32, 0)
    args = inputs(5, 100, 64, torch.float32, 0)
    with torch.inference_mode():
        v_ref, a_ref = block(*args)
        fast = CudaFusedAVFusionBlock(block.half(), CudaAttentionOps(HostStbavaKernels))
        v, a = fast(*(x.half() for x in args))
    assert rel_l2(v.float(), v_ref) < 3e-3 and rel_l2(a.float(), a_ref) < 3e-3


def test_unsupported_T_falls_back_to_torch():
    block = make_block(32, 4, torch.float32, 0)
    ops = CudaAttentionOps(HostStbavaKernels)
    args = inputs(9, 20, 32, torch.float32, 0)
    with torch.inference_mode():
        (v_ref, _), (v, _) = block(*args), CudaFusedAVFusionBlock(block, ops)(*args)
    assert rel_l2(v, v_ref) < 1e-5 and list(ops._cache.values()) == [None]


def sam_attention(D: int, heads: int = 2, grid: int = 16):
    from segment_anything.modeling.image_encoder import Attention

    torch.manual_seed(D)
    attn = Attention(heads * D, heads, use_rel_pos=True, input_size=(grid, grid)).eval()
    with torch.no_grad():
        attn.rel_pos_h.normal_(0, 0.5)
        attn.rel_pos_w.normal_(0, 0.5)
    return attn


@pytest.mark.parametrize("D", [64, 80])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_global_attention_through_launcher(D, dtype):
    """Error vs float64 at most ~2x that of SAM's own Attention run in the same precision."""
    attn = sam_attention(D)
    x = torch.randn(2, 16, 16, 2 * D)
    kernel = HostRelPosAttention()
    fast = CudaRelPosAttention(attn, dtype, kernel)
    with torch.inference_mode():
        ref = attn.double()(x.double())
        torch_low = attn.to(dtype)(x.to(dtype)).double()  # PyTorch at that precision (all of it)
        fast.to(dtype)
        out = fast(x.to(dtype)).double()
    assert kernel.launches == [f"relpos_flash_attn_{'f16' if dtype == torch.float16 else 'bf16'}_d{D}"]
    assert rel_l2(out, ref) <= 2 * rel_l2(torch_low, ref)


def test_tiny_model_pass():
    from avs_engine.reference import build_model

    model = build_model("tiny", seed=0)
    randomise(model.layers, torch.Generator().manual_seed(1))
    T, C, G = 3, model.config.fusion.dim, model.config.grid
    g = torch.Generator().manual_seed(2)
    enc, a128 = torch.randn(T, C, G, G, generator=g), torch.randn(T, model.config.audio.embed_dim, generator=g)
    keys = list(model.state_dict())
    with torch.inference_mode():
        dense_ref, sparse_ref = model.fuse(enc, a128)
        swapped = use_cuda_kernels(model, stbava_kernels=HostStbavaKernels, relpos_kernel=HostRelPosAttention())
        dense, sparse = model.fuse(enc, a128)
    # tiny's encoder has head dim 16: its global attention keeps SAM's module
    assert swapped == {"fusion_blocks": 2, "global_attention": 0}
    assert list(model.state_dict()) == keys
    assert rel_l2(dense, dense_ref) < 1e-5 and rel_l2(sparse, sparse_ref) < 1e-5


def test_encoder_global_blocks_swapped():
    """A vit_b-like encoder (head dim 64): global blocks swapped, windowed ones not; same keys."""
    from avs_engine.reference.image_encoder import AudioAdaptedImageEncoder
    from avs_engine.config import EncoderConfig

    cfg = EncoderConfig(img_size=128, patch_size=16, embed_dim=128, depth=2, num_heads=2, out_chans=32,
                        window_size=4, global_attn_indexes=(1,), adapter_dim=16)
    enc = AudioAdaptedImageEncoder(cfg, 128).eval()
    for blk in enc.blocks:
        with torch.no_grad():
            blk.attn.rel_pos_h.normal_(0, 0.3)
            blk.attn.rel_pos_w.normal_(0, 0.3)

    class Shell(torch.nn.Module):  # the two attributes the pass reads
        def __init__(self):
            super().__init__()
            self.image_encoder, self.layers = enc, torch.nn.ModuleList()
            self.config = type("Cfg", (), {"grid": 8})()

    shell = Shell()
    image, a128 = torch.randn(2, 3, 128, 128), torch.randn(2, 128)
    keys = list(enc.state_dict())
    with torch.inference_mode():
        ref = enc(image, a128)
        swapped = use_cuda_kernels(shell, compute_dtype=torch.float16, relpos_kernel=HostRelPosAttention())
        out = enc(image, a128)
    assert swapped["global_attention"] == 1 and isinstance(enc.blocks[1].attn, CudaRelPosAttention)
    assert not isinstance(enc.blocks[0].attn, CudaRelPosAttention)
    assert list(enc.state_dict()) == keys
    assert rel_l2(out, ref) < 1e-2  # float16 attention inside a float32 encoder


def test_launcher_validation():
    k = HostStbavaKernels(5, 8, 64)
    v, vpe, m, out = torch.zeros(5, 10, 64), torch.zeros(1, 10, 64), torch.zeros(64, 40), torch.zeros(5, 10, 64)
    # DeviceArray holds no reference: the tensors above must outlive the launches
    good = dict(v=as_array(v), vpe=as_array(vpe), values=as_array(v), m=as_array(m), out=as_array(out), stream=0)
    k.temporal_visual(**good)
    with pytest.raises(ShapeError, match="m: shape"):
        k.temporal_visual(**{**good, "m": as_array(torch.zeros(64, 41))})
    with pytest.raises(ShapeError, match="values: dtype"):
        k.temporal_visual(**{**good, "values": as_array(v.half())})
    with pytest.raises(ShapeError, match="innermost stride"):
        k.temporal_visual(**{**good, "v": as_array(torch.zeros(5, 64, 10).transpose(1, 2))})
    with pytest.raises(ShapeError, match="null"):
        k.temporal_visual(**{**good, "out": DeviceArray(0, (5, 10, 64), (640, 64, 1), "float32")})
    with pytest.raises(ShapeError, match="T in 1..8"):
        HostStbavaKernels(9, 8, 64)
    flash = HostRelPosAttention()
    q = torch.zeros(1, 64, 2, 48, dtype=torch.float16)
    rel = as_array(torch.zeros(2, 64, 8))
    with pytest.raises(ShapeError, match="head dim 48"):
        flash(as_array(q), as_array(q), as_array(q), rel, rel, as_array(q), (8, 8), (8, 8), 0.1, 0)
