"""Frames per image-encoder call on a GPU: from the model config and the free memory."""

from __future__ import annotations

from avs_engine.backends.frame_budget import encoder_frame_bytes, encoder_frames_per_call
from avs_engine.config import resolve


def test_per_frame_bytes_grow_with_the_encoder():
    tiny, b, h = (encoder_frame_bytes(resolve(n)) for n in ("tiny", "vit_b", "vit_h"))
    assert tiny < b < h
    # vit_h: 4096 tokens x 1280 wide; the worst block (global: q/k/v/out at width 80 + 128 = 208 for 16 heads)
    N, D = 4096, 1280
    assert h == 4 * (3 * N * D + 3 * N * D + 4 * 16 * N * 208 + 8 * N * D)


def test_frames_per_call_fits_half_the_free_memory_and_stays_in_1_to_T():
    h = resolve("vit_h")
    per = encoder_frame_bytes(h)
    assert encoder_frames_per_call(h, free_bytes=10 * per, T=64) == 5
    assert encoder_frames_per_call(h, free_bytes=per, T=64) == 1  # never 0: one frame is tried
    assert encoder_frames_per_call(h, free_bytes=1000 * per, T=7) == 7
    # an 80 GB card with the model loaded: a whole 64-frame clip in one call
    assert encoder_frames_per_call(h, free_bytes=75 * 10**9, T=64) == 64
