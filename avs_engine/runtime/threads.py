"""Threads for the pipeline's overlapped stages: bounded queues, errors carried to the caller, always joined."""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterator

_DONE = object()


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def background(it: Iterator, depth: int = 1, name: str = "avs-source") -> Iterator:
    """Run an iterator on its own thread, ``depth`` items ahead; its errors are raised here.

    Closing the returned generator (or leaving the loop early) stops the
    producer and joins its thread.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in it:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as e:  # handed to the consumer
            put(_Failure(e))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    t = threading.Thread(target=work, daemon=True, name=name)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        t.join()


class Worker:
    """One consumer thread fed through a bounded queue (``depth`` items).

    ``handle(item)`` runs on the thread, in order. The first error it raises
    stops the worker; :meth:`put` and :meth:`close` raise it in the caller.
    :meth:`close` drains and joins; :meth:`abort` drops what is queued and joins.
    """

    def __init__(self, handle: Callable[[object], None], depth: int = 2, name: str = "avs-writer") -> None:
        self._handle = handle
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._aborted = threading.Event()
        self._thread = threading.Thread(target=self._work, daemon=True, name=name)
        self._thread.start()

    def _work(self) -> None:
        while True:
            item = self._q.get()
            if item is _DONE:
                return
            if self._error is not None or self._aborted.is_set():
                continue  # keep draining so a blocked put() returns
            try:
                self._handle(item)
            except BaseException as e:
                self._error = e

    def _raise(self) -> None:
        if self._error is not None:
            err, self._error = self._error, None
            raise err

    def put(self, item) -> None:
        self._raise()
        self._q.put(item)

    def close(self) -> None:
        """Wait for everything queued to be handled; raise the worker's error, if any."""
        self._q.put(_DONE)
        self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Drop what is queued and join (the caller is already failing)."""
        self._aborted.set()
        self._q.put(_DONE)
        self._thread.join()
        self._error = None
