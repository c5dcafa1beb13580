"""The FLOP counter: SAM's encoder figures (0.97 / 2.99 / 5.96 TFLOP per 1024x1024 frame)
and torch's own count of the reference on the meta device."""

from __future__ import annotations

import dataclasses

import pytest

from avs_engine.bench.flops import decoder_macs_per_frame, fusion_macs_per_clip, stage_flops
from avs_engine.config import from_name


@pytest.mark.parametrize("preset, tflop", [("vit_b", 0.97), ("vit_l", 2.99), ("vit_h", 5.96)])
def test_encoder_matches_design_figures(preset, tflop):
    per_frame = stage_flops(from_name(preset), 1)["image_encoder"] / 1e12
    assert per_frame == pytest.approx(tflop, rel=0.01)


def test_decoder_and_fusion_match_design_figures():
    cfg = from_name("vit_h")
    # Mask decoder: ~3.6 GFLOP per frame.
    assert 2 * sum(decoder_macs_per_frame(cfg.decoder, 256, 64).values()) / 1e9 == pytest.approx(3.6, rel=0.03)
    # ST-BAVA, T=5: one 256x256 projection over 20480 tokens is ~2.7 GFLOP; the reference runs
    # 12 of them per block in its attentions (expanded audio tokens) and 4 in its pixel MLPs.
    parts = fusion_macs_per_clip(cfg.fusion, 64, 5)
    one = 2 * 20480 * 256 * 256
    assert one / 1e9 == pytest.approx(2.7, rel=0.01)
    assert 2 * parts["projections"] / cfg.fusion.depth / one == pytest.approx(12, rel=0.001)


def test_stages_scale_with_T():
    cfg = from_name("vit_b")
    one, five = stage_flops(cfg, 1), stage_flops(cfg, 5)
    for stage in ("audio", "image_encoder"):
        assert five[stage] == pytest.approx(5 * one[stage])


def _torch_count(cfg, T):
    """torch.utils.flop_counter on the reference model built on the meta device (no compute)."""
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    from avs_engine.reference.build import build_model

    m = build_model(cfg, device="meta")
    S, G, C = cfg.encoder.img_size, cfg.grid, cfg.fusion.dim
    meta = dict(device="meta")
    img, a128 = torch.empty(T, 3, S, S, **meta), torch.empty(T, cfg.audio.embed_dim, **meta)
    enc = torch.empty(T, C, G, G, **meta)
    got = {}
    with torch.inference_mode():
        for stage, fn in (
            ("audio", lambda: m.embed_audio(torch.empty(T, 1, 96, 64, **meta))),
            ("image_encoder", lambda: m.encode(img, a128)),
            ("fusion", lambda: m.fuse(enc, a128)),
            ("mask_decoder", lambda: m.decode(enc, enc, torch.empty(T, 2, C, **meta))),
        ):
            with FlopCounterMode(display=False) as fc:
                fn()
            got[stage] = fc.get_total_flops()
    return got


@pytest.mark.parametrize("preset", ["tiny", "vit_b"])
def test_counter_matches_torch_flop_counter(preset):
    cfg = from_name(preset)
    if preset == "tiny":  # also the VGGish layout, which the tiny preset replaces with a small CNN
        vgg = dataclasses.replace(cfg, audio=dataclasses.replace(cfg.audio, kind="vggish"))
        assert stage_flops(vgg, 3)["audio"] == pytest.approx(_torch_count(vgg, 3)["audio"], rel=1e-6)
    ours, theirs = stage_flops(cfg, 3), _torch_count(cfg, 3)
    for stage, n in theirs.items():
        assert ours[stage] == pytest.approx(n, rel=1e-3), stage
