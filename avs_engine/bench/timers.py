"""Clocks that tell the truth about asynchronous devices (synchronise before reading a clock).

:class:`HostTimer` synchronises the device (when given a ``sync``) before
each clock reading, so queued GPU work is charged to the interval that
queued it. :class:`CudaEventTimer` brackets the interval with CUDA events on
the current stream and reads their elapsed time once the end event is
complete. The matmul-peak measurement uses them; the model stages are timed by
the runner's own clock inside its clip method (``avs_engine.backends.clocks``).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator


class Interval:
    """Filled in when the timed block exits: ``seconds``."""

    seconds: float = float("nan")


class HostTimer:
    """``time.perf_counter`` around a block, with ``sync()`` called before both readings."""

    kind = "host clock (perf_counter)"

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self._sync = sync
        if sync is not None:
            self.kind = "host clock (perf_counter), device synchronised before each reading"

    @contextmanager
    def measure(self) -> Iterator[Interval]:
        iv = Interval()
        if self._sync:
            self._sync()
        t0 = time.perf_counter()
        try:
            yield iv
        finally:
            if self._sync:
                self._sync()
            iv.seconds = time.perf_counter() - t0


class CudaEventTimer:
    """CUDA events recorded on the current stream around a block (torch.cuda)."""

    kind = "CUDA events (torch.cuda.Event, elapsed_time)"

    def __init__(self, torch_module, device) -> None:
        self._torch = torch_module
        self._device = device

    @contextmanager
    def measure(self) -> Iterator[Interval]:
        cuda = self._torch.cuda
        iv = Interval()
        with cuda.device(self._device):
            start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
            cuda.synchronize()  # earlier work is not charged to this interval
            start.record()
            try:
                yield iv
            finally:
                end.record()
                end.synchronize()
                iv.seconds = start.elapsed_time(end) / 1e3  # elapsed_time is in ms
