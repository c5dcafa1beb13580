"""Per-stage wall-clock accounting for the pipeline.

The runner's ``synchronize()`` (where it has one) is called before a clock is
read, so asynchronous GPU work is charged to the stage that queued it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager


class StageTimer:
    """Accumulates seconds and call counts per stage name."""

    def __init__(self, sync=None) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._sync = sync or (lambda: None)

    @contextmanager
    def stage(self, name: str, sync: bool = False):
        if sync:
            self._sync()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if sync:
                self._sync()
            self.seconds[name] += time.perf_counter() - t0
            self.calls[name] += 1

    def add(self, name: str, seconds: float, calls: int = 1) -> None:
        self.seconds[name] += seconds
        self.calls[name] += calls

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {k: {"total_s": round(v, 6), "calls": self.calls[k]} for k, v in self.seconds.items()}

    def summary(self) -> str:
        """One line, ultralytics style: 'decode 12.1 ms, image_encoder 830.2 ms, ... per second of video'."""
        return ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in self.seconds.items())
