"""A file on the server that must never be opened, and proof of whether it was: a FIFO with a watcher.

Opening a FIFO for reading blocks until a writer opens it; the watcher polls with a non-blocking open
for writing, which succeeds only while some process (any process: FFmpeg in a Ray worker too) has it
open for reading. So ``opened`` becomes True exactly when someone opened the sentinel, and the reader is
then released (it reads a few bytes and end of file) instead of hanging. Works without root, inotify,
strace or atime (which ``noatime``/``relatime`` mounts make unreliable).
"""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path


class Sentinel:
    """``with Sentinel(folder / "secret.ts") as s: ...; assert not s.opened``."""

    def __init__(self, path: str | os.PathLike, payload: bytes = b"SECRET-BYTES\n") -> None:
        self.path = Path(path)
        self.payload = payload
        self.opened = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "Sentinel":
        self.path.unlink(missing_ok=True)
        os.mkfifo(self.path)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno != errno.ENXIO:   # ENXIO: no reader has it open
                    raise
                time.sleep(0.002)
                continue
            self.opened += 1
            try:
                os.write(fd, self.payload)
            except OSError:
                pass
            os.close(fd)
            time.sleep(0.01)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)
