"""Where outputs go, for every way of running: numbered run folders, resumable job folders, atomic commits.

* ``avs-run``: ``runs/run``, ``runs/run2``, ... are never reused (as
  ultralytics' predictor does), so a person finds every result again
  (:func:`next_run_dir`); inside, each video writes into a hidden
  ``.<stem>.partial/`` folder renamed to ``<stem>/`` (``<stem>_2`` when taken)
  only when everything is written (:class:`VideoOutput`).
* ``avs-batch``: one folder ``--out DIR`` for a whole job, resumable
  (:class:`OutputDir`)::

      DIR/<video_id>/result.json        per second: area fraction, box; the model; timings
      DIR/<video_id>/masks.rle.json     the masks, COCO RLE (or masks/000001.png ... with --mask-format png)
      DIR/failures.jsonl                one line per video that failed: {"video_id", "source", "stage", "error", "time"}
      DIR/summary.json                  the last run's closing summary
      DIR/.<video_id>.partial-<hex>/    a video being written (renamed to <video_id>/ when complete)

  A video is done when ``DIR/<video_id>/result.json`` exists. Staging folders
  left by a killed job are removed when the next job starts. One job at a time
  per folder (a lock file).

Either way a folder under a visible name is always complete: a video that
fails, or a run stopped by a signal, leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Iterable

from ..atomic import atomic_target

RESULT_NAME = "result.json"
FAILURES_NAME = "failures.jsonl"
SUMMARY_NAME = "summary.json"
LOCK_NAME = ".avs-batch.lock"
_PARTIAL = ".partial"
_MAX_TRIES = 10_000


def _rename(src: Path, target: Path) -> bool:
    """``src`` -> ``target`` unless ``target`` exists (False). ``os.rename`` onto an existing *empty* folder would
    succeed on POSIX and silently take it over: check first, and treat a lost race (the name appearing in between,
    non-empty) as taken."""
    if target.exists() or target.is_symlink():
        return False
    try:
        os.rename(src, target)
    except OSError:
        if target.exists():
            return False
        raise
    return True


def staging_folders(folder) -> set[Path]:
    """The staging folders (``.<name>.partial*``) in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return set()
    return {p for p in folder.iterdir() if p.name.startswith(".") and _PARTIAL in p.name and p.is_dir()}


# -- avs-run: numbered run folders ---------------------------------------------------------------------------


def next_run_dir(root="runs", name: str = "run", exist_ok: bool = False) -> Path:
    """Create and return the next numbered run folder under ``root``.

    The first is ``root/name``, then ``root/name2``, ``root/name3``..., one
    past the highest number present (folders left by earlier runs are never
    reused, even after a gap). Creation is an atomic ``mkdir``; when another
    process takes a number first, the next one is tried.

    ``exist_ok``: ``root/name`` itself, created if needed, whatever is in it
    (outputs already there are kept: :class:`VideoOutput` numbers new ones).
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if exist_ok:
        path = root / name
        path.mkdir(exist_ok=True)
        return path
    pattern = re.compile(rf"^{re.escape(name)}(\d*)$")
    taken = [0] + [int(m.group(1) or 1) for e in root.iterdir() if (m := pattern.match(e.name))]
    n = max(taken) + 1
    for _ in range(_MAX_TRIES):
        path = root / (name if n == 1 else f"{name}{n}")
        try:
            path.mkdir(exist_ok=False)
            return path
        except FileExistsError:   # lost a race (or a plain file of that name): next number
            n += 1
    raise RuntimeError(f"next_run_dir: no free run folder under {root} after {_MAX_TRIES} tries")


def clean_up_run_dir(run_dir, *, keep: set[Path] = frozenset(), remove_if_empty: bool = True) -> None:
    """After an interrupted or failed run: delete the staging folders not in ``keep``
    (those that were there before), then ``run_dir`` itself if it is empty and ``remove_if_empty``."""
    run_dir = Path(run_dir)
    for p in staging_folders(run_dir) - set(keep):
        shutil.rmtree(p, ignore_errors=True)
    if remove_if_empty:
        with contextlib.suppress(OSError):
            run_dir.rmdir()  # fails, as it should, when anything is inside


class VideoOutput:
    """A per-video staging folder that becomes ``run_dir/<stem>/`` on commit.

    Usage::

        with VideoOutput(run_dir, "clip") as out:
            write_mask_png(out.path / "masks" / "000.png", m)
            ...
        # committed on a clean exit (out.final_path); discarded on an exception
    """

    def __init__(self, run_dir, stem: str):
        self.run_dir = Path(run_dir)
        self.stem = str(stem)
        self.final_path: Path | None = None
        self._done = False
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Same stem twice in a batch (a/clip.mp4, b/clip.mp4): a second staging folder gets a number.
        for n in range(1, _MAX_TRIES):
            path = self.run_dir / f".{self.stem}{_PARTIAL}{'' if n == 1 else f'-{n}'}"
            with contextlib.suppress(FileExistsError):
                path.mkdir(exist_ok=False)
                break
        else:
            raise RuntimeError(f"VideoOutput: no free staging folder for {self.stem!r} in {self.run_dir}")
        self.path = path

    def commit(self) -> Path:
        """Rename the staging folder to ``run_dir/<stem>`` (``<stem>_2``, ``_3``... if taken)."""
        if self._done:
            if self.final_path is None:
                raise RuntimeError(f"VideoOutput({self.stem}): commit after discard")
            return self.final_path
        for n in range(1, _MAX_TRIES):
            target = self.run_dir / (self.stem if n == 1 else f"{self.stem}_{n}")
            if _rename(self.path, target):
                self.final_path, self._done = target, True
                return target
        raise RuntimeError(f"VideoOutput: no free name for {self.stem!r} in {self.run_dir}")

    def discard(self) -> None:
        """Delete the staging folder and everything written into it."""
        if not self._done:
            shutil.rmtree(self.path, ignore_errors=True)
            self._done = True

    def __enter__(self) -> "VideoOutput":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


# -- avs-batch: one resumable folder per job -----------------------------------------------------------------


class OutputBusy(RuntimeError):
    """Another job holds the output folder's lock."""


class OutputDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock = None

    def lock(self) -> "OutputDir":
        """Create the folder and take its lock (flock on the local node; not a guarantee across NFS clients)."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        f = open(self.root / LOCK_NAME, "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise OutputBusy(f"{self.root}: another avs-batch job is writing here ({LOCK_NAME} is locked)") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._lock = f
        return self

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def final(self, video_id: str) -> Path:
        return self.root / video_id

    def is_done(self, video_id: str) -> bool:
        return (self.root / video_id / RESULT_NAME).is_file()

    def done_ids(self) -> set[str]:
        """Every committed video (one listing of the folder, then one stat per entry)."""
        if not self.root.is_dir():
            return set()
        return {e.name for e in os.scandir(self.root)
                if not e.name.startswith(".") and e.is_dir() and os.path.isfile(os.path.join(e.path, RESULT_NAME))}

    def staging(self, video_id: str) -> Path:
        """A new hidden folder to write ``video_id`` into."""
        path = self.root / f".{video_id}{_PARTIAL}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def commit(self, staging: Path, video_id: str) -> Path | None:
        """Rename ``staging`` to ``DIR/<video_id>``; None (and ``staging`` removed) when that is already there."""
        target = self.final(video_id)
        if _rename(staging, target):
            return target
        shutil.rmtree(staging, ignore_errors=True)
        if not self.is_done(video_id):  # another writer got there first, or a stray folder of that name
            raise FileExistsError(f"{target} exists and holds no {RESULT_NAME}; move it away and run again")
        return None

    def clean_staging(self) -> int:
        """Remove the staging folders a killed job left; returns how many."""
        found = staging_folders(self.root)
        for p in found:
            shutil.rmtree(p, ignore_errors=True)
        return len(found)

    @property
    def failures_path(self) -> Path:
        return self.root / FAILURES_NAME

    def read_failures(self) -> dict[str, dict]:
        """video_id -> its last failure record (a line cut short by a kill is skipped)."""
        out: dict[str, dict] = {}
        with contextlib.suppress(FileNotFoundError):
            for line in self.failures_path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict) and "video_id" in rec:
                    out[rec["video_id"]] = rec
        return out

    def write_failures(self, records: Iterable[dict]) -> None:
        """Replace the failures file (atomically) with ``records``."""
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        with atomic_target(self.failures_path) as tmp:
            tmp.write_text(text, encoding="utf-8")

    def append_failure(self, record: dict) -> None:
        """One line, flushed to disk at once (a job killed right after keeps it)."""
        record = {**record, "time": record.get("time") or time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with open(self.failures_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


__all__ = ["FAILURES_NAME", "OutputBusy", "OutputDir", "RESULT_NAME", "SUMMARY_NAME", "VideoOutput", "clean_up_run_dir",
           "next_run_dir", "staging_folders"]
