"""How many frames the torch backend's image encoder takes per call on a GPU.

Frames are independent in the encoder, so a clip of any length can go
through it in chunks; one call per clip is fastest while it fits. Without
autograd the encoder's working set is one block's tensors at a time. Per
frame, in elements (N = G*G tokens, D the width, h heads of width d, N_p the
tokens padded to whole windows, W = roundup8(d + 2s) the width of the
scaled-dot-product form's q/k/v with the relative-position bias folded in,
s the attention grid side):

- the block input, its LayerNorm and the residual sum: 3 N D;
- the qkv projection: 3 N_p D;
- the SDPA form's q, k, v and output at width W: 4 h N_p W
  (SAM's own attention would add h N_p^2 per score matrix; the backend does
  not use it on a GPU);
- the MLP's hidden layer before and after GELU: 8 N D.

All counted at 4 bytes (the residual stream stays float32 under autocast;
low-precision copies are smaller), the worst block of the encoder. No torch
here: plain arithmetic on the model config.
"""

from __future__ import annotations

import math

# Of the memory free after the model is loaded, the share the encoder's working set may use
# (the fusion and decoder of the whole clip, the allocator's slack and other users keep the rest).
FREE_SHARE = 0.5


def _padded(width: int, align: int = 8) -> int:
    return -(-width // align) * align


def encoder_frame_bytes(config) -> int:
    """Bytes of the image encoder's working set per frame at its worst block (no autograd)."""
    e = config.encoder
    G = config.grid
    N, D, h = G * G, e.embed_dim, e.num_heads
    d = D // h
    worst = 0
    windows = {0} | ({e.window_size} if e.window_size else set())
    for w in windows:
        side = w or G
        n_p = N if not w else (math.ceil(G / w) * w) ** 2
        W = _padded(d + 2 * side)
        worst = max(worst, 3 * N * D + 3 * n_p * D + 4 * h * n_p * W + 8 * N * D)
    return 4 * worst


def encoder_frames_per_call(config, free_bytes: int, T: int, share: float = FREE_SHARE) -> int:
    """Frames per encoder call (1..T) so that the working set stays within ``share`` of ``free_bytes``."""
    per_frame = encoder_frame_bytes(config)
    return max(1, min(T, int(share * free_bytes) // per_frame))
