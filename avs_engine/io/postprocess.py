"""Low-res mask logits -> binary masks at the video's size, with numpy only.

The authors upsample the summed decoder logits with
``F.interpolate(mode="bilinear", align_corners=False)`` to 1024x1024, then
again to the output size, and threshold at 0 (docs/model.md, section 8).
:func:`upsample_bilinear` is that interpolation without torch.
"""

from __future__ import annotations

import numpy as np

from avs_engine.errors import ShapeError


def _taps(n_src: int, n_dst: int):
    """Source taps and weights along one axis, as PyTorch computes them (CPU, float32).

    Returns ``(i0, i1, w0, w1)``, each ``[n_dst]``: out = in[i0]*w0 + in[i1]*w1.
    """
    # align_corners=False: half-pixel centres, scale = in/out, negative source
    # positions clamped to 0 (no antialias, even when shrinking).
    scale = np.float32(n_src) / np.float32(n_dst)
    pos = scale * (np.arange(n_dst, dtype=np.float32) + np.float32(0.5)) - np.float32(0.5)
    pos = np.maximum(pos, np.float32(0.0))
    i0 = pos.astype(np.int64)  # floor, pos >= 0
    i0 = np.minimum(i0, n_src - 1)
    i1 = np.minimum(i0 + 1, n_src - 1)
    w1 = (pos - i0.astype(np.float32)).astype(np.float32)
    w0 = (np.float32(1.0) - w1).astype(np.float32)
    return i0, i1, w0, w1


def upsample_bilinear(x: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """``torch.nn.functional.interpolate(x, size_hw, mode="bilinear", align_corners=False)``.

    Args:
        x: float ``[N, C, h, w]`` (any leading dims work; the last two are resized).
        size_hw: ``(H, W)`` of the output.

    Returns:
        ``[N, C, H, W]`` in ``x``'s float dtype (float32 for integer input).
    """
    if x.ndim < 2:
        raise ShapeError(f"upsample_bilinear: expected [N,C,h,w], got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    H, W = int(size_hw[0]), int(size_hw[1])
    h, w = x.shape[-2:]
    # Separable: along the width, then along the height. The weights are
    # float32 like PyTorch's; the two passes round a little differently from
    # its fused loop (relative differences ~1e-7).
    if w != W:
        i0, i1, w0, w1 = _taps(w, W)
        x = x[..., i0] * w0.astype(x.dtype) + x[..., i1] * w1.astype(x.dtype)   # [..., h, W]
    if h != H:
        i0, i1, w0, w1 = _taps(h, H)
        w0 = w0.astype(x.dtype)[:, None]
        w1 = w1.astype(x.dtype)[:, None]
        x = x[..., i0, :] * w0 + x[..., i1, :] * w1                                # [..., H, W]
    return np.ascontiguousarray(x)


def logits_to_masks(logits: np.ndarray, size_hw: tuple[int, int], mid: int = 1024) -> np.ndarray:
    """Decoder logits -> binary masks at the output size.

    Args:
        logits: float ``[T, 1, L, L]`` (the three multimask logits already summed).
        size_hw: ``(H, W)`` of the masks, usually the video's frame size.
        mid: side of the intermediate square the authors upsample to first
            (their ``img_size``, 1024); ``None`` or 0 skips that step.

    Returns:
        bool ``[T, H, W]``: logit > 0 after both upsamplings.
    """
    if logits.ndim != 4 or logits.shape[1] != 1:
        raise ShapeError(f"logits_to_masks: expected logits [T,1,L,L], got shape {logits.shape}")
    H, W = int(size_hw[0]), int(size_hw[1])
    masks = np.empty((logits.shape[0], H, W), bool)
    # A frame at a time, and the last pass in bands of output rows: the float
    # intermediates stay small even for 8K frames (a full-frame float pass
    # there costs ~0.4 GB); each output value is computed exactly as
    # upsample_bilinear computes it.
    for t in range(logits.shape[0]):
        x = logits[t:t + 1].astype(np.float32, copy=False)   # [1, 1, L, L]
        if mid:
            x = upsample_bilinear(x, (mid, mid))            # [1, 1, mid, mid]
        x = upsample_bilinear(x, (x.shape[-2], W))[0, 0]     # [h, W]: the width pass
        h = x.shape[0]
        if h == H:
            masks[t] = x > 0
            continue
        i0, i1, w0, w1 = _taps(h, H)
        for r in range(0, H, _BAND_ROWS):
            sl = slice(r, min(H, r + _BAND_ROWS))
            masks[t, sl] = (x[i0[sl]] * w0[sl, None] + x[i1[sl]] * w1[sl, None]) > 0
    return masks


_BAND_ROWS = 256


def mask_stats(mask: np.ndarray) -> dict:
    """Area and bounding box of one mask.

    Args:
        mask: bool ``[H, W]``.

    Returns:
        ``{"area_fraction": float in [0, 1], "bbox": [x0, y0, x1, y1] or None}``;
        the box is half-open in pixels (``mask[y0:y1, x0:x1]`` holds every
        pixel that is on), ``None`` for an empty mask.
    """
    if mask.ndim != 2:
        raise ShapeError(f"mask_stats: expected mask [H,W], got shape {mask.shape}")
    mask = mask.astype(bool, copy=False)
    area = float(mask.mean()) if mask.size else 0.0
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return {"area_fraction": area, "bbox": None}
    rows = np.flatnonzero(mask.any(axis=1))
    bbox = [int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1]
    return {"area_fraction": area, "bbox": bbox}
