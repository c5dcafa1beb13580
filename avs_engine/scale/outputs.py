"""A batch job's output folder: one committed folder per finished video, the failures file, the last summary.

Layout of ``--out DIR``::

    DIR/<video_id>/result.json        per second: area fraction, box; the model; timings
    DIR/<video_id>/masks.rle.json     the masks, COCO RLE (or masks/000001.png ... with --mask-format png)
    DIR/failures.jsonl                one line per video that failed: {"video_id", "source", "stage", "error", "time"}
    DIR/summary.json                  the last run's closing summary
    DIR/.<video_id>.partial-<hex>/    a video being written (renamed to <video_id>/ when complete)

A video is done when ``DIR/<video_id>/result.json`` exists: its folder is
written under a hidden name and renamed in one step, so a folder under the
final name is always complete. Staging folders left by a killed job are
removed when the next job starts. One job at a time per folder (a lock file).
"""

from __future__ import annotations

import contextlib
import json
import os
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
_PARTIAL = ".partial-"


class OutputBusy(RuntimeError):
    """Another job holds the output folder's lock."""


class OutputDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._lock = None

    # -- one job at a time

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

    # -- videos

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
        path = self.root / f".{video_id}{_PARTIAL}{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def commit(self, staging: Path, video_id: str) -> Path | None:
        """Rename ``staging`` to ``DIR/<video_id>``; None (and ``staging`` removed) when that is already there."""
        target = self.final(video_id)
        if target.exists():
            shutil.rmtree(staging, ignore_errors=True)
            if not self.is_done(video_id):
                raise FileExistsError(f"{target} exists and holds no {RESULT_NAME}; move it away and run again")
            return None
        try:
            os.rename(staging, target)
        except OSError:
            if target.exists():  # another writer got there first (a non-empty folder cannot be renamed onto)
                shutil.rmtree(staging, ignore_errors=True)
                return None
            raise
        return target

    def clean_staging(self) -> int:
        """Remove the staging folders a killed job left; returns how many."""
        n = 0
        if self.root.is_dir():
            for e in os.scandir(self.root):
                if e.name.startswith(".") and _PARTIAL in e.name and e.is_dir():
                    shutil.rmtree(e.path, ignore_errors=True)
                    n += 1
        return n

    # -- failures

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


__all__ = ["FAILURES_NAME", "OutputBusy", "OutputDir", "RESULT_NAME", "SUMMARY_NAME"]
