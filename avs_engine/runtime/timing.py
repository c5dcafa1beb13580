"""Per-stage totals for one video: seconds and calls per step, summed over its clips.

The seconds themselves are measured where the work runs (the clip source, the
runner's own clock inside its clip method, the writer); this only adds them up.
"""

from __future__ import annotations

from collections import defaultdict


class StageTimer:
    """Accumulates seconds and call counts per stage name, in the order stages first appear."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def add(self, name: str, seconds: float, calls: int = 1) -> None:
        self.seconds[name] += seconds
        self.calls[name] += calls

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {k: {"total_s": round(v, 6), "calls": self.calls[k]} for k, v in self.seconds.items()}
