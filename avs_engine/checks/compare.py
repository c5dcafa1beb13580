"""Numerical comparisons and test inputs shared by the export checks (numpy only: trt_check must not pull torch)."""

from __future__ import annotations

import numpy as np


def _float64(x) -> np.ndarray:
    """An array, or a torch tensor of any dtype and device (no torch import here), as float64 numpy."""
    return x.detach().cpu().double().numpy() if hasattr(x, "detach") else np.asarray(x, np.float64)


def rel_l2(y, ref) -> float:
    """||y - ref|| / ||ref|| in float64 (inf when y has non-finite values); numpy arrays or torch tensors."""
    y, ref = _float64(y), _float64(ref)
    if not np.isfinite(y).all():
        return float("inf")
    den = np.linalg.norm(ref)
    return float(np.linalg.norm(y - ref) / den) if den > 0 else float(np.linalg.norm(y))


def mask_iou(masks: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-frame IoU of bool masks [T,H,W]; two empty masks score 1."""
    inter = (masks & ref).reshape(len(ref), -1).sum(1)
    union = (masks | ref).reshape(len(ref), -1).sum(1)
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def random_clip(config, T: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random network inputs: image [T,3,S,S] ~ N(0,1), log_mel [T,1,96,64] ~ N(-1,2)."""
    rng = np.random.default_rng(seed)
    S = config.encoder.img_size
    return {
        "image": rng.standard_normal((T, 3, S, S), dtype=np.float32),
        "log_mel": (rng.standard_normal((T, 1, 96, 64), dtype=np.float32) * 2 - 1).astype(np.float32),
    }
