"""Per-stage clocks a runner uses inside its clip method.

A runner times its own stages, because only it knows where the work runs: a
host clock around a CPU call, CUDA events recorded on its stream around
asynchronous GPU work (no synchronisation between stages, so the timing does
not slow the clip down). The caller reads the seconds once the clip is done.

Observers see each stage begin and end on the host (the benchmark records
peak memory per stage that way): they are hooks on the same clock, not a
second copy of the chain.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator, Protocol


class StageObserver(Protocol):
    def stage_started(self, name: str) -> None: ...

    def stage_ended(self, name: str) -> None: ...


class StageClock:
    """Seconds per stage name, by the host's monotonic clock (``time.perf_counter``).

    ``with clock.stage("fusion"): ...`` adds the block's duration to
    ``"fusion"``; :meth:`seconds` returns every stage's total. Right for
    synchronous work (CPU runners, ONNX Runtime's ``run``).
    """

    kind = "host monotonic clock (perf_counter)"

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}
        self.observers: list[StageObserver] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        for o in self.observers:
            o.stage_started(name)
        mark = self._start(name)
        try:
            yield
        finally:
            self._stop(name, mark)
            for o in self.observers:
                o.stage_ended(name)

    def _start(self, name: str):
        return time.perf_counter()

    def _stop(self, name: str, mark) -> None:
        self._add(name, time.perf_counter() - mark)

    def _add(self, name: str, seconds: float) -> None:
        self._seconds[name] = self._seconds.get(name, 0.0) + seconds

    def seconds(self) -> dict[str, float]:
        """stage -> seconds, in the order the stages first ran (waits for the device where needed)."""
        return dict(self._seconds)


class SyncedStageClock(StageClock):
    """A host clock that synchronises the device before each reading (for runners without events)."""

    def __init__(self, synchronize) -> None:
        super().__init__()
        self._sync = synchronize
        self.kind = "host monotonic clock, device synchronised before each reading"

    def _start(self, name: str):
        self._sync()
        return time.perf_counter()

    def _stop(self, name: str, mark) -> None:
        self._sync()
        super()._stop(name, mark)


class EventStageClock(StageClock):
    """Device events recorded around each stage; elapsed times read once, in :meth:`seconds`.

    ``new_event()`` returns an object with ``record()`` (on the runner's stream),
    ``synchronize()`` and ``elapsed_s(later)``; the torch and tensorrt runners
    hand in their own.
    """

    def __init__(self, new_event, kind: str) -> None:
        super().__init__()
        self._new_event = new_event
        self._pending: list[tuple[str, object, object]] = []
        self.kind = kind

    def _start(self, name: str):
        ev = self._new_event()
        ev.record()
        return ev

    def _stop(self, name: str, mark) -> None:
        end = self._new_event()
        end.record()
        self._pending.append((name, mark, end))
        self._seconds.setdefault(name, 0.0)  # keeps the order the stages ran in

    def seconds(self) -> dict[str, float]:
        if self._pending:
            self._pending[-1][2].synchronize()
            for name, start, end in self._pending:
                self._add(name, start.elapsed_s(end))
            self._pending = []
        return dict(self._seconds)
