"""One run over many videos: the numbered run folder's life, one failure line per video, clean-up on a signal.

:func:`run_videos` is what ``avs-run`` does between parsing and printing: it
opens the next numbered run folder, runs each video through the pipeline (a
video that fails gets one line and the others still run), and on Ctrl-C or
SIGTERM removes what was half-written. :func:`sigterm_as_interrupt` is the one
signal clean-up every long-running command installs (avs-run, avs-batch,
avs-serve): SIGTERM raises like Ctrl-C, so the same ``except KeyboardInterrupt``
clean-up runs.
"""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ..errors import error_line
from .outputs import clean_up_run_dir, next_run_dir, staging_folders


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, timeout, a container stop), raised like Ctrl-C so that the same clean-up runs."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, the first SIGTERM raises :class:`Terminated` in the main thread; later ones are ignored
    (the clean-up is under way). Elsewhere than the main thread, signals are left alone."""
    fired = []

    def handler(signum, frame):
        if not fired:
            fired.append(signum)
            raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@dataclass
class RunOutcome:
    """What :func:`run_videos` did: ``results`` (each video's ``result.json`` document, or
    ``{"video", "error"}``), ``interrupted`` (the KeyboardInterrupt/Terminated that stopped it)."""

    run_dir: Path | None = None
    results: list[dict] = field(default_factory=list)
    failed: int = 0
    elapsed_s: float = 0.0
    interrupted: KeyboardInterrupt | None = None

    @property
    def saved(self) -> bool:
        return self.run_dir is not None and self.run_dir.is_dir()

    @property
    def done(self) -> list[dict]:
        return [r for r in self.results if "error" not in r]


def run_videos(pipeline, items, *, project="runs", name: str = "run", exist_ok: bool = False,
               on_video: Callable[[object, dict], None] = lambda item, doc: None,
               progress: Callable[[Path], Callable[[int, int], None] | None] = lambda video: None,
               **video_options) -> RunOutcome:
    """Each of ``items`` (``.source``, and ``.path`` or ``.error``) through ``pipeline.run_video`` into the next
    numbered folder ``project/name``, ``name2``... (``exist_ok``: ``project/name`` itself).

    ``on_video(item, doc)`` is told each outcome as it happens (``doc["error"]`` for a failure);
    ``progress(video)`` may return a ``(done, total)`` callback for that video; ``video_options``: keyword
    arguments of :meth:`Pipeline.run_video` (overlay, save_logits, model). Ctrl-C or SIGTERM (inside
    :func:`sigterm_as_interrupt`) stops the run: half-written outputs are removed, finished videos kept,
    and the outcome says so. A run where nothing succeeded leaves no empty folder."""
    out = RunOutcome()
    created, before = False, set()
    t0 = time.perf_counter()
    try:
        existed = exist_ok and (Path(project) / name).is_dir()
        out.run_dir = next_run_dir(project, name, exist_ok=exist_ok)
        created = not existed
        before = staging_folders(out.run_dir)
        for item in items:
            if item.path is None:
                doc = {"video": item.source, "error": item.error}
            else:
                try:
                    doc = pipeline.run_video(item.path, out.run_dir, progress=progress(item.path), **video_options)
                except Exception as e:  # any failure of one video (ours, a framework's, PyAV's, a full disk...): the run goes on
                    doc = {"video": str(item.path), "error": error_line(item.path, e)}
            out.failed += "error" in doc
            out.results.append(doc)
            on_video(item, doc)
    except KeyboardInterrupt as e:
        out.interrupted = e
    finally:
        out.elapsed_s = time.perf_counter() - t0
        if out.run_dir is not None:
            clean_up_run_dir(out.run_dir, keep=before, remove_if_empty=created)
    return out


__all__ = ["RunOutcome", "Terminated", "run_videos", "sigterm_as_interrupt"]
