"""AVSBench's metrics, exactly as its evaluation code defines them (docs/metrics.md).

Numpy only, so any backend's logits can be scored. Everything is computed at
the resolution the masks are given in (AVSBench: 224x224).

* **IoU** of a frame: ``pred = sigmoid(logit) > 0.5`` (i.e. ``logit > 0``);
  ``|pred & gt| / (|pred | gt| + 1e-7)``; a frame whose ground truth is empty
  scores the fraction of its pixels predicted background. mIoU: mean over
  the frames of a video, then over videos.
* **F-score** (beta^2 = 0.3): 255 thresholds ``linspace(0, 1 - 1e-10, 255)``
  (float32, so the last one is 1.0) on the sigmoid, ``pred >= threshold``;
  precision ``tp / (|pred| + 1e-20)``, recall ``tp / (|gt| + 1e-20)``,
  ``F = 1.3 P R / (0.3 P + R)`` with 0/0 -> 0. Frames with empty ground truth
  are skipped; the F curve is averaged over a video's remaining frames and
  its maximum over thresholds is the video's score; a video whose frames are
  all empty scores 0. Mean over videos.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ShapeError

BETA2 = 0.3
N_THRESHOLDS = 255
IOU_EPS = 1e-7
PR_EPS = 1e-20


def _torch_linspace_f32(start: float, end: float, steps: int) -> np.ndarray:
    """``torch.linspace(start, end, steps)`` (float32, CPU) bit for bit: a float32
    step, each value one fused multiply-add from the nearer end."""
    s, e = np.float32(start), np.float32(end)
    step = np.float64((e - s) / np.float32(steps - 1))
    i = np.arange(steps)
    half = steps // 2
    vals = np.where(i < half, np.float64(s) + step * i, np.float64(e) - step * (steps - 1 - i))
    return vals.astype(np.float32)


# torch.linspace(0, 1 - 1e-10, 255) in float32, as AVSBench computes it: the last
# threshold rounds to exactly 1.0.
THRESHOLDS = _torch_linspace_f32(0.0, 1.0 - 1e-10, N_THRESHOLDS)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """float32 logistic function, overflow-free."""
    x = np.asarray(logits, np.float32)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _check(logits: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits = np.asarray(logits)
    gt = np.asarray(gt)
    if logits.ndim == 4 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if gt.ndim == 4 and gt.shape[1] == 1:
        gt = gt[:, 0]
    if logits.ndim != 3 or logits.shape != gt.shape:
        raise ShapeError(f"metrics: expected logits and masks [F,H,W] of one shape, got {logits.shape} and {gt.shape}")
    return logits.astype(np.float32, copy=False), gt.astype(bool, copy=False)


def frame_ious(logits: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-frame IoU. logits float [F,H,W] (or [F,1,H,W]), gt bool [F,H,W] -> float64 [F]."""
    logits, gt = _check(logits, gt)
    pred = sigmoid(logits) > 0.5
    inter = (pred & gt).sum(axis=(1, 2)).astype(np.float64)
    union = (pred | gt).sum(axis=(1, 2)).astype(np.float64)
    empty = ~gt.any(axis=(1, 2))
    n_pix = gt.shape[1] * gt.shape[2]
    inter[empty] = (~pred[empty]).sum(axis=(1, 2))  # predicted background where there is nothing
    union[empty] = n_pix
    return inter / (union + IOU_EPS)


def frame_f_curves(logits: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F curves of the frames with non-empty ground truth.

    Returns (curves float64 [K,255], kept bool [F]) where K = kept.sum().
    """
    logits, gt = _check(logits, gt)
    prob = sigmoid(logits)
    kept = gt.any(axis=(1, 2))
    curves = []
    for p, g in zip(prob[kept], gt[kept]):
        p = p.ravel()
        g = g.ravel()
        # |{p >= th}| for every threshold from the sorted probabilities.
        all_sorted = np.sort(p)
        pos_sorted = np.sort(p[g])
        n_pred = all_sorted.size - np.searchsorted(all_sorted, THRESHOLDS, side="left")
        tp = pos_sorted.size - np.searchsorted(pos_sorted, THRESHOLDS, side="left")
        prec = tp / (n_pred + PR_EPS)
        rec = tp / (g.sum() + PR_EPS)
        with np.errstate(invalid="ignore", divide="ignore"):
            f = (1 + BETA2) * prec * rec / (BETA2 * prec + rec)
        curves.append(np.nan_to_num(f, nan=0.0))
    return (np.stack(curves) if curves else np.zeros((0, N_THRESHOLDS))), kept


def video_scores(logits: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(IoU, F) of one video: logits float [F,H,W], gt bool [F,H,W]."""
    ious = frame_ious(logits, gt)
    curves, _ = frame_f_curves(logits, gt)
    f = float(curves.mean(axis=0).max()) if len(curves) else 0.0
    return float(ious.mean()), f


@dataclass
class MetricAccumulator:
    """Per-video scores, summed over a split: ``add(name, logits, gt)``, then ``summary()``."""

    names: list[str] = field(default_factory=list)
    ious: list[float] = field(default_factory=list)
    fs: list[float] = field(default_factory=list)
    frames: int = 0

    def add(self, name: str, logits: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
        """Score one video (all its frames, or a subset) and keep the result."""
        iou, f = video_scores(logits, gt)
        self.names.append(name)
        self.ious.append(iou)
        self.fs.append(f)
        self.frames += int(np.asarray(gt).shape[0])
        return iou, f

    @property
    def videos(self) -> int:
        return len(self.names)

    def summary(self) -> dict:
        """{"miou", "f_score", "videos", "frames"}; scores are NaN for an empty split."""
        return {
            "miou": float(np.mean(self.ious)) if self.ious else float("nan"),
            "f_score": float(np.mean(self.fs)) if self.fs else float("nan"),
            "videos": self.videos,
            "frames": self.frames,
        }


__all__ = ["frame_ious", "frame_f_curves", "video_scores", "sigmoid", "MetricAccumulator", "THRESHOLDS"]
