"""The live writer: each second's logits -> a mask, one JSON line (time, latency, area, box, COCO RLE), an optional PNG.

The third of live mode's pieces, on its own thread (:class:`~avs_engine.runtime.threads.Worker`,
two seconds deep): a stop signal reaches the main thread, never a line being
written, and :meth:`LiveWriter.close` finishes what was handed over. Lines go
to a text stream (``avs-run --json``: stdout) and/or to ``masks.jsonl`` in
the run folder, each with one system call, so even a killed process leaves
whole lines only. PNGs are written atomically (``masks/000001.png`` for second 0).
The latency of a mask runs from the moment its second of media had arrived
(``LiveSecond.ready``) to the moment its line is written.
"""

from __future__ import annotations

import json
from array import array
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

import numpy as np

from ..io.postprocess import logits_to_masks, mask_stats
from ..io.writers import write_mask_png
from . import rle
from .live import LiveResult
from .stream_source import LiveSecond
from .threads import Worker
from .writer import MASKS_DIR, second_file

JSONL_NAME = "masks.jsonl"


def utc_now() -> str:
    """The wall clock, ISO 8601 UTC with milliseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LiveWriter:
    """Writes each second's mask as it comes (:meth:`write`); keeps only each mask's latency (4 bytes a second,
    for the summary) and the last line's document. ``size_hw``: the stream's frame size; ``mid``: the encoder input side.
    ``on_mask(doc)``: told each line's document (on the writer thread). ``out_dir``: where ``masks.jsonl`` (and ``masks/`` with ``png``) go; ``lines``: a text stream that also
    gets every line (None: none)."""

    def __init__(self, size_hw: tuple[int, int], mid: int, *, out_dir: str | Path | None = None,
                 lines: TextIO | None = None, png: bool = False, masks_function=None, on_mask=None, view=None) -> None:
        self.size_hw = (int(size_hw[0]), int(size_hw[1]))
        self.mid = int(mid)
        self.lines = lines
        self.png = png and out_dir is not None
        self.to_masks = masks_function or logits_to_masks
        self.latencies = array("f")
        self.last: dict | None = None
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self._fd = None
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if self.png:
                (self.out_dir / MASKS_DIR).mkdir(exist_ok=True)
            self._fd = os.open(self.out_dir / JSONL_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.on_mask = on_mask   # told each line's document, on the writer thread
        self.view = view         # a LiveView shown each tinted frame
        self._worker = Worker(self._write, depth=2, name="avs-live-writer")

    def put(self, item: LiveSecond, result: LiveResult, dropped: int = 0) -> None:
        """Hand one second over to the writer thread (blocks while two wait; raises the writer's error)."""
        self._worker.put((item, result, dropped))

    def _write(self, job) -> None:
        self.write(*job)

    def write(self, item: LiveSecond, result: LiveResult, dropped: int = 0) -> dict:
        """One second, on the caller's thread: its mask from ``result.logits [1, 1, L, L]``; returns the line's document."""
        t0 = time.perf_counter()
        mask = self.to_masks(result.logits, self.size_hw, mid=self.mid)[0]
        stats = mask_stats(mask)
        doc = {
            "second": item.second, "phase": item.phase, "time_s": item.time_s,
            "window": [result.seconds[0], result.seconds[-1]],
            "area": float(stats["area_fraction"]), "bbox": stats["bbox"], "rle": rle.encode(mask),
            "dropped": int(dropped),
            "timings_ms": {k: round(v * 1e3, 2) for k, v in {**result.timings,
                                                               "postprocess": time.perf_counter() - t0}.items()},
        }
        if self.png:
            write_mask_png(self.out_dir / MASKS_DIR / second_file(item.tick, ".png"), mask)
        doc["latency_s"] = round(time.monotonic() - item.ready, 4)
        doc["wall"] = utc_now()
        line = json.dumps(doc, separators=(",", ":")) + "\n"
        if self._fd is not None:
            os.write(self._fd, line.encode())   # one call: a stop leaves whole lines only
        if self.lines is not None:
            self.lines.write(line)
            self.lines.flush()
        self.latencies.append(doc["latency_s"])
        self.last = doc
        if self.view is not None and item.view is not None:
            self.view.show(item.view, mask, doc)
        if self.on_mask is not None:
            self.on_mask(doc)
        return doc

    def close(self) -> None:
        """Write what was handed over, then close the file (raises the writer thread's error, if any)."""
        try:
            self._worker.close()
        finally:
            self._close_file()

    def abort(self) -> None:
        self._worker.abort()
        self._close_file()

    def _close_file(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    @property
    def count(self) -> int:
        """Masks written."""
        return len(self.latencies)

    def latency_summary(self) -> dict:
        """Median, p95 and max latency in seconds over the written masks (None when there are none)."""
        lat = np.asarray(self.latencies, np.float64)
        if lat.size == 0:
            return {"p50_s": None, "p95_s": None, "max_s": None}
        return {"p50_s": round(float(np.percentile(lat, 50)), 4), "p95_s": round(float(np.percentile(lat, 95)), 4),
                "max_s": round(float(lat.max()), 4)}


__all__ = ["LiveWriter", "JSONL_NAME", "utc_now"]
