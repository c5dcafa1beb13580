"""A runner spec for fault tests: the demo runner, wrapped so that a test can kill its actor while it works.

Pickled by value into Ray's workers (``register``), so the workers need not import ``tests``.

- Every runner built writes ``actor-<pid>`` into ``marker_dir`` (restarts show as new pids).
- ``stall_frames``: the first clip batch (``run_clips``) of that many frames writes its pid to ``busy`` and waits (up to a
  minute) for the test to kill the process; once ``killed`` exists, such batches run normally.
- ``poison_frames``: a clip batch of that many frames kills its own process (SIGKILL, as a segfault in a
  native library would), every time.
- ``hang_frames``: a clip batch of that many frames writes ``hung-<pid>`` and never returns (an hour), every time.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from avs_engine.backends.model_spec import ModelSpec


def register() -> None:
    import sys

    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


class _Faulty:
    def __init__(self, inner, spec: "FaultySpec") -> None:
        self.inner, self.spec = inner, spec

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def activate(self):
        self.inner.activate()
        (Path(self.spec.marker_dir) / f"actor-{os.getpid()}").touch()
        return self

    def run_clips(self, clips, clock=None):
        n = sum(len(image) for image, _ in clips)
        marker = Path(self.spec.marker_dir)
        if n == self.spec.poison_frames:
            (marker / f"poisoned-{os.getpid()}").touch()
            os.kill(os.getpid(), signal.SIGKILL)
        if n == self.spec.hang_frames:
            (marker / f"hung-{os.getpid()}").touch()
            time.sleep(3600)
        if n == self.spec.stall_frames and not (marker / "killed").exists():
            (marker / "busy.tmp").write_text(str(os.getpid()))
            os.replace(marker / "busy.tmp", marker / "busy")
            time.sleep(60)
        return self.inner.run_clips(clips, clock)


@dataclass(frozen=True)
class FaultySpec(ModelSpec):
    marker_dir: str = ""
    stall_frames: int = -1
    poison_frames: int = -1
    hang_frames: int = -1

    def create(self):
        return _Faulty(super().create(), self)


def kill_when_busy(marker: Path, stop: threading.Event, killed: list) -> None:
    """The test's hand: wait for the stalled actor to say its pid, then SIGKILL that process."""
    while not stop.is_set():
        busy = marker / "busy"
        if busy.exists():
            pid = int(busy.read_text())
            (marker / "killed").touch()
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return
        time.sleep(0.05)
