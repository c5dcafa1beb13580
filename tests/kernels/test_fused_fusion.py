"""The exact-algebra ST-BAVA block equals the reference block."""

import pytest
import torch

from avs_engine.exact.fused_fusion import FusedAVFusionBlock, fuse_stbava
from avs_engine.reference.fusion import AVFusionBlock
from avs_engine.checks.compare import rel_l2



def randomise(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Non-trivial LayerNorm affine parameters and attention biases (their defaults are 1/0)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=gen))
            elif isinstance(m, torch.nn.MultiheadAttention):
                m.in_proj_bias.copy_(0.3 * torch.randn(m.in_proj_bias.shape, generator=gen))
                m.out_proj.bias.copy_(0.3 * torch.randn(m.out_proj.bias.shape, generator=gen))


def make_block(C: int, H: int, dtype: torch.dtype, seed: int) -> AVFusionBlock:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    block = AVFusionBlock(C, H, C).eval()
    randomise(block, gen)
    return block.to(dtype)


def inputs(T: int, N: int, C: int, dtype: torch.dtype, seed: int):
    g = torch.Generator().manual_seed(seed + 1)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731
    # a and ape as in the model: ape is the block-0 audio (l2-normalised), a the current audio.
    ape = torch.nn.functional.normalize(r(T, 1, C), dim=-1)
    return r(T, 1, C), r(T, N, C), ape, r(1, N, C)


def run_both(T: int, N: int, C: int, H: int, dtype: torch.dtype, seed: int = 0):
    block = make_block(C, H, dtype, seed)
    fused = FusedAVFusionBlock.from_block(block)
    args = inputs(T, N, C, dtype, seed)
    with torch.inference_mode():
        return block(*args), fused(*args)


@pytest.mark.parametrize("T", [1, 2, 5, 8])
def test_fp32_matches_reference(T):
    (v_ref, a_ref), (v, a) = run_both(T, N=96, C=64, H=8, dtype=torch.float32, seed=T)
    assert rel_l2(v, v_ref) < 1e-5
    assert rel_l2(a, a_ref) < 1e-5


@pytest.mark.parametrize("T", [1, 2, 5, 8])
def test_fp64_matches_reference(T):
    (v_ref, a_ref), (v, a) = run_both(T, N=96, C=64, H=8, dtype=torch.float64, seed=10 + T)
    assert rel_l2(v, v_ref) < 1e-12
    assert rel_l2(a, a_ref) < 1e-12


def test_fp32_model_width():
    """C=256, 8 heads (the real width) at a small pixel count."""
    (v_ref, a_ref), (v, a) = run_both(5, N=256, C=256, H=8, dtype=torch.float32, seed=3)
    assert rel_l2(v, v_ref) < 1e-5
    assert rel_l2(a, a_ref) < 1e-5


@pytest.mark.slow
def test_fp32_vit_h_shapes():
    (v_ref, a_ref), (v, a) = run_both(5, N=4096, C=256, H=8, dtype=torch.float32, seed=4)
    assert rel_l2(v, v_ref) < 1e-5
    assert rel_l2(a, a_ref) < 1e-5


def test_parameters_shared_and_keys_unchanged():
    block = make_block(32, 4, torch.float32, 0)
    fused = FusedAVFusionBlock.from_block(block)
    assert list(fused.state_dict()) == list(block.state_dict())
    assert fused.avt_attention.in_proj_weight is block.avt_attention.in_proj_weight


def test_training_mode_refused():
    fused = FusedAVFusionBlock.from_block(make_block(32, 4, torch.float32, 0)).train()
    with pytest.raises(RuntimeError, match="eval"):
        fused(*inputs(2, 8, 32, torch.float32, 0))


def test_fuse_pass_on_tiny_model():
    from avs_engine.reference import build_model

    model = build_model("tiny", seed=0)
    gen = torch.Generator().manual_seed(5)
    randomise(model.layers, gen)
    T, C, G = 3, model.config.fusion.dim, model.config.grid
    g = torch.Generator().manual_seed(6)
    enc = torch.randn(T, C, G, G, generator=g)
    a128 = torch.randn(T, model.config.audio.embed_dim, generator=g)
    keys = list(model.state_dict())
    with torch.inference_mode():
        dense_ref, sparse_ref = model.fuse(enc, a128)
        fuse_stbava(model)
        assert all(isinstance(layer, FusedAVFusionBlock) for layer in model.layers)
        assert fuse_stbava(model) is model  # idempotent
        dense, sparse = model.fuse(enc, a128)
    assert list(model.state_dict()) == keys
    assert rel_l2(dense, dense_ref) < 1e-5
    assert rel_l2(sparse, sparse_ref) < 1e-5
