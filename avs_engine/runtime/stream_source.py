"""The live source: a stream's complete seconds, ready for the live step, the newest one winning.

The first of live mode's three pieces (live source -> :class:`~avs_engine.runtime.live.LiveStep`
-> :class:`~avs_engine.runtime.live_writer.LiveWriter`). A reader thread pulls
the stream (:class:`avs_engine.io.stream.StreamReader`), squashes each
second's frame and computes its log-mel example, and leaves the result in a
one-place slot. When inference is slower than the stream, a second still in
the slot when the next one completes is dropped and counted: the model
always takes the newest complete second, and nothing queues.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..io.preprocess import MODES, squash_frame
from ..io.stream import StreamReader
from .live import second_example
from .live_view import display_frame


@dataclass
class LiveSecond:
    """One second for the live step: ``frame`` squashed uint8 ``[s, s, 3]``, ``log_mel`` float32
    ``[1, 1, 96, 64]``, ``ready`` the ``time.monotonic()`` at which the stream had delivered it."""

    second: int
    frame: np.ndarray
    log_mel: np.ndarray
    ready: float
    view: np.ndarray | None = None   # the frame for the live view (uint8 [h, w, 3], at most 640 wide), if one is on
    phase: int = 0       # with K masks a second (staggered windows): which of the K, starting at second + phase / K
    per_second: int = 1

    @property
    def time_s(self) -> float:
        return self.second + self.phase / self.per_second

    @property
    def tick(self) -> int:
        return self.second * self.per_second + self.phase


class NewestSlot:
    """A one-place mailbox: :meth:`put` replaces what is waiting (counting it as dropped), :meth:`get` waits."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item = None
        self._closed = False
        self.dropped: list[float] = []   # times (s) of the seconds replaced before the model took them

    def put(self, item: LiveSecond) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped.append(self._item.time_s)
            self._item = item
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    @property
    def finished(self) -> bool:
        """Closed and nothing left."""
        with self._cond:
            return self._closed and self._item is None

    def get(self, timeout: float | None = None) -> LiveSecond | None:
        """The newest second; None once closed and empty (or after ``timeout`` seconds with nothing)."""
        with self._cond:
            while self._item is None and not self._closed:
                if not self._cond.wait(timeout):
                    return None
            item, self._item = self._item, None
            return item


class LiveSource:
    """Reads a :class:`StreamReader` on a thread into a :class:`NewestSlot`; iterate for the seconds.

    ``img_size``/``resize``: the squash (as the offline clip source). ``view``: also keep a display-size
    copy of each sampled frame (for the live view). ``stop()`` asks the thread to end after the packet in
    hand; ``stop_event`` (shared with the caller) does the same when set, and ends the iteration.
    ``error``: what ended the reader abnormally, if anything.
    """

    def __init__(self, reader: StreamReader, img_size: int, resize: str = "avsbench", view: bool = False,
                 stop_event: threading.Event | None = None) -> None:
        if resize not in MODES:
            raise ValueError(f"resize must be one of {MODES}, got {resize!r}")
        self.reader = reader
        # one conversion per sampled frame: the model's square and, for the view, a small copy
        self.reader.transform = lambda rgb: (squash_frame(rgb, img_size, resize), display_frame(rgb) if view else None)
        self.slot = NewestSlot()
        self.received = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._asked = stop_event   # the caller's: read, never set here
        self._thread = threading.Thread(target=self._read, name="avs-live-source", daemon=True)

    @property
    def dropped(self) -> list[int]:
        return self.slot.dropped

    def start(self) -> "LiveSource":
        self._thread.start()
        return self

    def stop(self, wait_s: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(wait_s)

    def _stopping(self) -> bool:
        return self._stop.is_set() or (self._asked is not None and self._asked.is_set())

    def _read(self) -> None:
        try:
            for s in self.reader.seconds():
                if self._stopping():
                    break
                log_mel = second_example(s.samples) if self.reader.has_audio else _silence()
                self.received += 1
                small, shown = s.frame
                self.slot.put(LiveSecond(s.second, small, log_mel, s.ready, shown, s.phase, s.per_second))
        except BaseException as e:   # reaches the consumer through .error
            self.error = e
        finally:
            self.slot.close()
            try:
                self.reader.close()
            except Exception:
                pass

    def __iter__(self) -> Iterator[LiveSecond]:
        while not self._stopping():
            item = self.slot.get(timeout=0.25)   # short waits: a signal reaches the main thread promptly
            if item is not None:
                yield item
            elif self.slot.finished:
                return


def _silence() -> np.ndarray:
    from ..io.logmel import silent_examples

    return silent_examples(1)


__all__ = ["LiveSecond", "LiveSource", "NewestSlot"]
