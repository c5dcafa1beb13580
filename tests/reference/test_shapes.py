"""Shapes through every stage of the reference model (preset ``tiny``), checked
against the single stage declaration in ``avs_engine.artifacts.spec``."""

import pytest
import torch

from avs_engine.config import from_name
from avs_engine.reference import build_model
from avs_engine.artifacts.spec import AUDIO, FUSION, IMAGE_ENCODER, MASK_DECODER, check_arrays, dims_for


@pytest.fixture(scope="module")
def model():
    return build_model("tiny", seed=0)


def _inputs(cfg, T, seed):
    g = torch.Generator().manual_seed(seed)
    s = cfg.encoder.img_size
    return torch.randn(T, 3, s, s, generator=g), torch.randn(T, 1, 96, 64, generator=g)


@pytest.mark.parametrize("T", [1, 3, 5])
def test_stage_shapes(model, T):
    cfg = model.config
    dims = dims_for(cfg, T)
    G, C, A = cfg.grid, cfg.fusion.dim, cfg.audio.embed_dim
    image, log_mel = _inputs(cfg, T, seed=T)
    with torch.no_grad():
        a128 = model.embed_audio(log_mel)
        enc = model.encode(image, a128)
        pe = model.dense_pe()
        dense, sparse = model.fuse(enc, a128)
        logits = model.decode(enc, dense, sparse)
        full = model(image, log_mel)

    assert a128.shape == (T, A)
    assert enc.shape == (T, C, G, G)
    assert pe.shape == (1, C, G, G)
    assert dense.shape == (T, C, G, G)
    assert sparse.shape == (T, 2, C)
    assert logits.shape == (T, 1, 4 * G, 4 * G)
    # The two sparse tokens are the same audio token (the authors' repeat(1, 2, 1)).
    assert torch.equal(sparse[:, 0], sparse[:, 1])
    for t in (a128, enc, dense, sparse, logits):
        assert t.dtype == torch.float32 and torch.isfinite(t).all()
    # The whole forward is exactly the four stages chained.
    assert torch.equal(full, logits)

    # The same shapes as the one declaration every backend and export reads.
    check_arrays(AUDIO, {"log_mel": log_mel.numpy()}, dims)
    check_arrays(AUDIO, {"a128": a128.numpy()}, dims, outputs=True)
    check_arrays(IMAGE_ENCODER, {"image": image.numpy(), "a128": a128.numpy()}, dims)
    check_arrays(IMAGE_ENCODER, {"enc": enc.numpy()}, dims, outputs=True)
    check_arrays(FUSION, {"enc": enc.numpy(), "a128": a128.numpy()}, dims)
    check_arrays(FUSION, {"dense": dense.numpy(), "sparse": sparse.contiguous().numpy()}, dims, outputs=True)
    check_arrays(MASK_DECODER, {"enc": enc.numpy(), "dense": dense.numpy(), "sparse": sparse.contiguous().numpy()}, dims)
    check_arrays(MASK_DECODER, {"logits": logits.numpy()}, dims, outputs=True)


@pytest.mark.parametrize("T", [1, 3, 5])
def test_upsample(model, T):
    cfg = model.config
    G = cfg.grid
    logits = torch.randn(T, 1, 4 * G, 4 * G, generator=torch.Generator().manual_seed(10 + T))
    out = model.upsample(logits)
    assert out.shape == (T, 1, cfg.output_size, cfg.output_size)
    out = model.upsample(logits, (50, 70))
    assert out.shape == (T, 1, 50, 70)
    # Bilinear to S, then to the output size, align_corners=False (the authors' postprocess_masks).
    s = cfg.encoder.img_size
    ref = torch.nn.functional.interpolate(
        torch.nn.functional.interpolate(logits.double(), (s, s), mode="bilinear", align_corners=False),
        (50, 70), mode="bilinear", align_corners=False,
    )
    # float32 interpolation (weights computed in float32) against float64: ~1e-5 on values of order 1.
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=5e-5)


def test_frames_are_independent_outside_the_fusion(model):
    """Audio backbone and encoder treat frames one by one; only the fusion mixes time."""
    image, log_mel = _inputs(model.config, 3, seed=99)
    with torch.no_grad():
        a128 = model.embed_audio(log_mel)
        enc = model.encode(image, a128)
        a_one = torch.cat([model.embed_audio(log_mel[i : i + 1]) for i in range(3)])
        enc_one = torch.cat([model.encode(image[i : i + 1], a128[i : i + 1]) for i in range(3)])
        dense, _ = model.fuse(enc, a128)
        dense_one = torch.cat([model.fuse(enc[i : i + 1], a128[i : i + 1])[0] for i in range(3)])
    torch.testing.assert_close(a_one, a128, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(enc_one, enc, rtol=1e-5, atol=1e-5)
    # Temporal attention makes frame i depend on the other frames.
    assert (dense_one - dense).abs().max() > 1e-3


def test_dense_pe_is_sams_encoding(model):
    """``dense_pe`` is SAM's ``PositionEmbeddingRandom`` over the token grid, bit for bit in float32."""
    g = model.config.grid
    assert torch.equal(model.dense_pe(), model.pe_layer((g, g)).unsqueeze(0))


# Observed relative errors: 5e-7 (fp32), 1.6e-3 (fp16), 1.2e-2 (bf16).
@pytest.mark.parametrize("dtype,max_rel", [(torch.float32, 1e-5), (torch.float16, 1e-2), (torch.bfloat16, 5e-2)])
def test_cast_models_run(dtype, max_rel):
    """The torch backend casts the whole model (fp16/bf16): every stage must accept that.
    Relative L2 error of the logits against a float64 run of the same weights."""
    image, log_mel = _inputs(from_name("tiny"), 2, seed=42)
    ref_model = build_model("tiny", seed=0).double()
    m = build_model("tiny", seed=0).to(dtype)
    with torch.no_grad():
        ref = ref_model(image.double(), log_mel.double())
        out = m(image.to(dtype), log_mel.to(dtype))
    assert out.dtype == dtype
    rel = ((out.double() - ref).norm() / ref.norm()).item()
    assert rel < max_rel, rel
