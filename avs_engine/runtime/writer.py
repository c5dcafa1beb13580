"""The writer: a video's predictions -> masks, optional logits and overlay, on its own thread.

The third of the pipeline's three pieces. Each second's logits are upsampled
to the video's size, thresholded, summarised (area, box) and written as a
PNG (or, with ``mask_format="rle"``, as a COCO run-length encoding in one
``masks.rle.json``: :mod:`avs_engine.runtime.rle`); ``save_logits`` also keeps
the low-resolution logits; the overlay video
is written alongside. Masks and ``result.json`` are the primary outputs: an
overlay that cannot be written (an audio format the encoder refuses, a
muxing error) becomes a warning, never a lost video.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..atomic import write_json_atomic
from ..io.postprocess import logits_to_masks, mask_stats
from ..io.writers import OverlayWriter, write_mask_png
from . import rle
from .model_step import ClipPrediction
from .results import SecondResult, VideoResult
from .threads import Worker

LOGITS_DIR = "logits"
MASKS_DIR = "masks"
OVERLAY_NAME = "overlay.mp4"
RLE_NAME = "masks.rle.json"
MASK_FORMATS = ("png", "rle")


def second_file(second: int, suffix: str) -> str:
    """'000001.png' for second 0: 1-based, six digits."""
    return f"{second + 1:06d}{suffix}"


def overlay_failure(error: BaseException) -> str:
    msg = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"overlay not written ({type(error).__name__}: {msg}); masks and result.json are complete"


class VideoWriter:
    """Writes one video's outputs under ``out_dir`` as predictions arrive (:meth:`put`), on a thread.

    ``result``: the video's record (size, path); each written second is
    appended to ``result.seconds`` and any overlay failure to ``result.warnings``.
    ``mid``: the encoder input side (logits go up to it, then to the video's size).
    ``mask_format``: ``"png"`` (``masks/000001.png`` per second) or ``"rle"``
    (every second's COCO RLE in ``masks.rle.json``, written by :meth:`close`;
    also kept in :attr:`rles`, second -> ``{"size": [h, w], "counts": str}``).
    ``masks_function``: upsampling and thresholding (``logits_to_masks``'s signature), e.g. the
    runner's on its GPU (:meth:`Runner.masks_function`); default ``logits_to_masks`` on the host.
    """

    def __init__(self, result: VideoResult, out_dir: Path, mid: int, *, overlay: bool = True,
                 save_logits: bool = False, depth: int = 2, mask_format: str = "png", masks_function=None) -> None:
        if mask_format not in MASK_FORMATS:
            raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")
        self.result = result
        self.out_dir = Path(out_dir)
        self.mid = int(mid)
        self.save_logits = save_logits
        self.mask_format = mask_format
        self.to_masks = masks_function or logits_to_masks
        self.rles: dict[int, dict] = {}
        self.seconds_s = {"postprocess": 0.0, "write": 0.0}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if mask_format == "png":
            (self.out_dir / MASKS_DIR).mkdir(exist_ok=True)
        if save_logits:
            (self.out_dir / LOGITS_DIR).mkdir(exist_ok=True)
        self.overlay_path: Path | None = None
        self._overlay: OverlayWriter | None = None
        if overlay:
            try:
                self._overlay = OverlayWriter(result.path, self.out_dir / OVERLAY_NAME, info=result.info)
            except Exception as e:
                self._overlay_failed(e)
        self._worker = Worker(self._write, depth=depth, name="avs-writer")

    def put(self, pred: ClipPrediction) -> None:
        """Queue the new seconds of one clip (blocks while ``depth`` clips wait; raises the writer's error)."""
        self._worker.put(pred)

    def close(self) -> Path | None:
        """Finish every queued second and the overlay; returns the overlay's path (None if not written)."""
        self._worker.close()
        if self.mask_format == "rle":
            t0 = time.perf_counter()
            h, w = self.result.height, self.result.width
            write_json_atomic(self.out_dir / RLE_NAME, {
                "format": rle.FORMAT, "order": "column-major", "size": [h, w],
                "seconds": [{"second": k, **self.rles[k]} for k in sorted(self.rles)]}, indent=None)
            self.seconds_s["write"] += time.perf_counter() - t0
        if self._overlay is not None:
            t0 = time.perf_counter()
            try:
                self.overlay_path = self._overlay.close()
                for note in getattr(self._overlay, "notes", ()):
                    self.result.warn(f"overlay: {note}")
            except Exception as e:
                self._overlay_failed(e)
            self._overlay = None
            self.seconds_s["write"] += time.perf_counter() - t0
        return self.overlay_path

    def write_all(self, predictions, progress=None) -> Path | None:
        """Every prediction, then :meth:`close` (:meth:`abort` and re-raise on any failure); the result's
        seconds end in order. ``progress(done, total)``: seconds handed over so far, the video's total.
        Returns the overlay's path (None if not written)."""
        done = 0
        try:
            for pred in predictions:
                self.put(pred)
                done += len(pred.window.new_seconds)
                if progress is not None:
                    progress(done, self.result.n_seconds)
            overlay_path = self.close()
        except BaseException:
            self.abort()
            raise
        self.result.seconds.sort(key=lambda s: s.second)
        return overlay_path

    def outputs(self) -> dict:
        """What ``result.json`` says was written (relative names; None for what was not)."""
        return {"masks": RLE_NAME if self.mask_format == "rle" else f"{MASKS_DIR}/",
                "overlay": OVERLAY_NAME if self.overlay_path else None,
                "logits": f"{LOGITS_DIR}/" if self.save_logits else None}

    def abort(self) -> None:
        self._worker.abort()
        if self._overlay is not None:
            self._overlay.abort()
            self._overlay = None

    # -- on the writer's thread

    def _write(self, pred: ClipPrediction) -> None:
        size_hw = (self.result.height, self.result.width)
        for second in pred.window.new_seconds:
            t0 = time.perf_counter()
            logits = pred.second_logits(second)  # [1, L, L]
            mask = self.to_masks(logits[None], size_hw, mid=self.mid)[0]
            stats = mask_stats(mask)
            t1 = time.perf_counter()
            if self.mask_format == "rle":
                self.rles[second] = rle.encode(mask)
            else:
                write_mask_png(self.out_dir / MASKS_DIR / second_file(second, ".png"), mask)
            if self.save_logits:
                _save_npy(self.out_dir / LOGITS_DIR / second_file(second, ".npy"), logits[0].astype(np.float16))
            if self._overlay is not None:
                try:
                    self._overlay.add_second(second, mask)
                except Exception as e:
                    self._overlay.abort()
                    self._overlay = None
                    self._overlay_failed(e)
            self.result.seconds.append(SecondResult(second, None, float(stats["area_fraction"]), stats["bbox"]))
            self.seconds_s["postprocess"] += t1 - t0
            self.seconds_s["write"] += time.perf_counter() - t1

    def _overlay_failed(self, error: BaseException) -> None:
        self.result.warn(overlay_failure(error))


def _save_npy(path: Path, array: np.ndarray) -> None:
    from ..atomic import atomic_target

    with atomic_target(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, array)
