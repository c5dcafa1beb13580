"""Where a run's outputs go: numbered run folders, and per-video staging folders.

``runs/run``, ``runs/run2``, ``runs/run3``... are never reused (as ultralytics'
predictor does), so a person finds every result again. Inside a run, each
video writes into a hidden ``.<stem>.partial/`` folder that is renamed to
``<stem>/`` only when everything for that video is written: a video that
fails leaves nothing half-written under a visible name.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

_MAX_TRIES = 10_000


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
    taken = [0]
    for entry in root.iterdir():
        m = pattern.match(entry.name)
        if m:
            taken.append(int(m.group(1)) if m.group(1) else 1)
    n = max(taken) + 1
    for _ in range(_MAX_TRIES):
        path = root / (name if n == 1 else f"{name}{n}")
        try:
            path.mkdir(exist_ok=False)
            return path
        except FileExistsError:   # lost a race (or a plain file of that name): next number
            n += 1
    raise RuntimeError(f"next_run_dir: no free run folder under {root} after {_MAX_TRIES} tries")


def staging_folders(run_dir) -> set[Path]:
    """The per-video staging folders (``.<stem>.partial*``) in ``run_dir``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return set()
    return {p for p in run_dir.iterdir() if p.name.startswith(".") and ".partial" in p.name and p.is_dir()}


def clean_up_run_dir(run_dir, *, keep: set[Path] = frozenset(), remove_if_empty: bool = True) -> None:
    """After an interrupted or failed run: delete the staging folders not in ``keep``
    (those that were there before), then ``run_dir`` itself if it is empty and ``remove_if_empty``."""
    run_dir = Path(run_dir)
    for p in staging_folders(run_dir) - set(keep):
        shutil.rmtree(p, ignore_errors=True)
    if remove_if_empty:
        try:
            run_dir.rmdir()  # fails, as it should, when anything is inside
        except OSError:
            pass


class VideoOutput:
    """A per-video staging folder that becomes ``run_dir/<stem>/`` on commit.

    Usage::

        with VideoOutput(run_dir, "clip") as out:
            write_mask_png(out.path / "masks" / "000.png", m)
            ...
        # committed on a clean exit (out.final_path); discarded on an exception

    Args:
        run_dir: the run folder (from :func:`next_run_dir`).
        stem: the video's name without suffix; the output folder's name.
    """

    def __init__(self, run_dir, stem: str):
        self.run_dir = Path(run_dir)
        self.stem = str(stem)
        self.final_path: Path | None = None
        self._done = False
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Same stem twice in a batch (a/clip.mp4, b/clip.mp4): a second staging
        # folder gets a number rather than sharing the first.
        for n in range(1, _MAX_TRIES):
            suffix = "" if n == 1 else f"-{n}"
            path = self.run_dir / f".{self.stem}.partial{suffix}"
            try:
                path.mkdir(exist_ok=False)
                break
            except FileExistsError:
                continue
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
            # os.rename onto an existing *empty* folder would succeed on POSIX
            # and silently take it over: check first, and treat a lost race
            # (the name appearing in between, non-empty) as "taken".
            if target.exists() or target.is_symlink():
                continue
            try:
                os.rename(self.path, target)
            except OSError:
                if target.exists():
                    continue
                raise
            self.final_path = target
            self._done = True
            return target
        raise RuntimeError(f"VideoOutput: no free name for {self.stem!r} in {self.run_dir}")

    def discard(self) -> None:
        """Delete the staging folder and everything written into it."""
        if self._done:
            return
        shutil.rmtree(self.path, ignore_errors=True)
        self._done = True

    def __enter__(self) -> "VideoOutput":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()
