"""The audio-adapted image encoder against SAM's ``ImageEncoderViT`` (docs/model.md, section 4)."""

import math
from functools import partial

import pytest
import torch
from segment_anything.modeling.image_encoder import ImageEncoderViT
from torch import nn

from avs_engine.config import from_name
from avs_engine.reference.image_encoder import AudioAdaptedImageEncoder

CFG = from_name("tiny")
E = CFG.encoder
A = CFG.audio.embed_dim
T = 2


def randomise_(module, seed):
    """Every parameter random, the zero-initialised relative positions included."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            r = torch.randn(p.shape, generator=g, dtype=p.dtype)
            if p.dim() >= 2:
                p.copy_(r / math.sqrt(p[0].numel()))
            elif name.endswith("weight"):  # LayerNorm gains
                p.copy_(1.0 + 0.2 * r)
            else:
                p.copy_(0.2 * r)
    return module


@pytest.fixture(scope="module")
def encoder():
    enc = AudioAdaptedImageEncoder(E, A).double().eval()
    return randomise_(enc, seed=0)


@pytest.fixture(scope="module")
def sam_encoder(encoder):
    sam = ImageEncoderViT(
        img_size=E.img_size, patch_size=E.patch_size, in_chans=3, embed_dim=E.embed_dim, depth=E.depth,
        num_heads=E.num_heads, mlp_ratio=E.mlp_ratio, out_chans=E.out_chans, qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), act_layer=nn.GELU, use_abs_pos=True, use_rel_pos=True,
        rel_pos_zero_init=True, window_size=E.window_size, global_attn_indexes=E.global_attn_indexes,
    ).double().eval()
    sd = {k: v for k, v in encoder.state_dict().items() if not k.startswith("prompt_generator.")}
    sam.load_state_dict(sd, strict=True)  # our keys are SAM's plus prompt_generator.*
    return sam


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(5)
    image = torch.randn(T, 3, E.img_size, E.img_size, generator=g, dtype=torch.float64)
    a128 = torch.randn(T, A, generator=g, dtype=torch.float64).relu()  # VGGish ends with a ReLU
    return image, a128


def test_state_dict_keys(encoder):
    keys = set(encoder.state_dict())
    for i in range(E.depth):
        assert f"prompt_generator.lightweight_mlp_{i}.0.weight" in keys
        assert f"prompt_generator.lightweight_mlp_{i}.0.bias" in keys
        assert encoder.state_dict()[f"prompt_generator.lightweight_mlp_{i}.0.weight"].shape == (E.adapter_dim, A)
    assert encoder.state_dict()["prompt_generator.shared_mlp.weight"].shape == (E.embed_dim, E.adapter_dim)
    assert "prompt_generator.shared_mlp.bias" in keys
    adapter_keys = {k for k in keys if k.startswith("prompt_generator.")}
    assert len(adapter_keys) == 2 * E.depth + 2
    # Relative positions are on in every block (vit_h's decomposed relative positions).
    assert all(f"blocks.{i}.attn.rel_pos_h" in keys for i in range(E.depth))


def test_zero_adapters_equal_sam(encoder, sam_encoder, inputs):
    image, a128 = inputs
    enc = randomise_(AudioAdaptedImageEncoder(E, A).double().eval(), seed=0)  # same weights as the fixture
    with torch.no_grad():
        enc.prompt_generator.shared_mlp.weight.zero_()
        enc.prompt_generator.shared_mlp.bias.zero_()
        ours = enc(image, a128)
        theirs = sam_encoder(image)
    assert ours.shape == (T, E.out_chans, E.grid, E.grid)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    # With the adapters on, the audio changes the output (so the test above is not vacuous).
    with torch.no_grad():
        assert (encoder(image, a128) - theirs).abs().max() > 1e-2


def test_random_adapters_equal_hand_loop(encoder, sam_encoder, inputs):
    """p_i = shared_mlp(GELU(W_i a128 + b_i)), added to every token right before block i."""
    image, a128 = inputs
    pg = encoder.prompt_generator
    with torch.no_grad():
        x = sam_encoder.patch_embed(image) + sam_encoder.pos_embed  # [T, G, G, D]
        for i, blk in enumerate(sam_encoder.blocks):
            lin = getattr(pg, f"lightweight_mlp_{i}")[0]
            h = a128 @ lin.weight.T + lin.bias
            h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))  # exact GELU
            p = h @ pg.shared_mlp.weight.T + pg.shared_mlp.bias  # [T, D]
            x = blk(x + p[:, None, None, :])
        ref = sam_encoder.neck(x.permute(0, 3, 1, 2))
        ours = encoder(image, a128)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)


def test_each_frame_gets_its_own_audio(encoder, inputs):
    image, a128 = inputs
    with torch.no_grad():
        out = encoder(image, a128)
        swapped = encoder(image, a128.flip(0))
        one = encoder(image[:1], a128[:1])
    torch.testing.assert_close(one, out[:1], rtol=0, atol=1e-10)
    assert (swapped[0] - out[0]).abs().max() > 1e-3
