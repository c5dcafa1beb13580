"""avs-run's inputs as users have them: files, folders, glob patterns and ``@list.txt`` files.

:func:`expand_inputs` turns the command line's arguments into an ordered list
of videos to run and of one-line errors (a missing or unreadable path, a
pattern that matches nothing, a folder named inside a list), plus notes about
what a folder or pattern held that is not a video. Nothing here stops the
batch: the caller reports the errors and runs the rest.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from .common import quote_path

# What a folder or a pattern contributes: files with these suffixes (case-insensitive).
VIDEO_SUFFIXES = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".flv", ".wmv",
    ".3gp", ".ogv", ".asf",
})
_GLOB_CHARS = set("*?[")
_NAMES_SHOWN = 5


@dataclass
class Input:
    """One video to run (``path``), or why an argument gave none (``error``, one line without ``error:``)."""

    source: str
    path: Path | None = None
    error: str | None = None


@dataclass
class Inputs:
    items: list[Input] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def videos(self) -> list[Path]:
        return [i.path for i in self.items if i.path is not None]

    @property
    def errors(self) -> list[str]:
        return [i.error for i in self.items if i.error is not None]


def is_video_name(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _readable(path: Path) -> str | None:
    """None, or why ``path`` cannot be read."""
    try:
        with open(path, "rb"):
            return None
    except OSError as e:
        return e.strerror.lower() if e.strerror else type(e).__name__


def _file(arg: str, path: Path, where: str = "") -> Input:
    shown = quote_path(path)
    if not path.exists():
        return Input(arg, error=f"{shown}: file not found{where}")
    if path.is_dir():
        if where:
            return Input(arg, error=f"{shown}: is a folder{where}; a list names video files, one per line")
        return Input(arg, error=f"{shown}: is a folder")  # not reached for command-line folders (expanded)
    why = _readable(path)
    if why:
        return Input(arg, error=f"{shown}: cannot read ({why}){where}")
    return Input(arg, path=path)


def _skipped_note(where: str, skipped: list[str]) -> str:
    names = ", ".join(quote_path(n) for n in skipped[:_NAMES_SHOWN]) + (", ..." if len(skipped) > _NAMES_SHOWN else "")
    return f"{where}: skipped {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} that {'is' if len(skipped) == 1 else 'are'} not a video ({names})"


def _folder(arg: str, folder: Path, out: Inputs) -> None:
    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as e:
        out.items.append(Input(arg, error=f"{quote_path(folder)}: cannot list this folder ({(e.strerror or type(e).__name__).lower()})"))
        return
    videos = [p for p in entries if p.is_file() and is_video_name(p)]
    skipped = [p.name + ("/" if p.is_dir() else "") for p in entries if p not in videos]
    if skipped:
        out.notes.append(_skipped_note(quote_path(folder), skipped))
    if not videos:
        out.items.append(Input(arg, error=f"{quote_path(folder)}: no video files in this folder "
                                          f"(suffixes: {', '.join(sorted(VIDEO_SUFFIXES))})"))
    out.items.extend(_file(arg, p) for p in videos)


def _pattern(arg: str, out: Inputs) -> None:
    matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(arg), recursive=True))
    if not matches:
        out.items.append(Input(arg, error=f"{quote_path(arg)}: no file matches this pattern"))
        return
    videos = [p for p in matches if p.is_file() and is_video_name(p)]
    skipped = [str(p) + ("/" if p.is_dir() else "") for p in matches if p not in videos]
    if skipped:
        out.notes.append(_skipped_note(quote_path(arg), skipped))
    if not videos:
        out.items.append(Input(arg, error=f"{quote_path(arg)}: matches no video file"))
    out.items.extend(_file(arg, p) for p in videos)


def _list_file(arg: str, out: Inputs) -> None:
    lst = Path(os.path.expanduser(arg[1:]))
    try:
        text = lst.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as e:
        out.items.append(Input(arg, error=f"{quote_path(lst)}: cannot read this list of videos "
                                          f"({(e.strerror or type(e).__name__).lower()})"))
        return
    n = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        n += 1
        p = Path(os.path.expanduser(entry))
        if not p.is_absolute() and not p.exists() and (lst.parent / p).exists():
            p = lst.parent / p  # relative to the list's folder when not found from here
        out.items.append(_file(arg, p, where=f" (listed in {quote_path(lst)} line {lineno})"))
    if n == 0:
        out.items.append(Input(arg, error=f"{quote_path(lst)}: this list names no video"))


def expand_inputs(args) -> Inputs:
    """The videos the arguments name, in order.

    - a file: run as is, whatever its suffix;
    - a folder: every video file directly inside it (by suffix, sorted by name;
      hidden files ignored); other entries are skipped with a note;
    - a pattern with ``*``, ``?`` or ``[...]`` (quoted, so that the shell leaves it
      to us; ``**`` spans folders) that is not an existing path: the video files it matches;
    - ``@FILE``: the paths FILE lists, one per line (blank lines and ``#`` comments
      ignored); a relative path is taken from the current folder, else from FILE's folder.

    The same file named twice runs once.
    """
    out = Inputs()
    for arg in args:
        arg = str(arg)
        if arg.startswith("@") and len(arg) > 1:
            _list_file(arg, out)
        elif Path(arg).is_dir():
            _folder(arg, Path(arg), out)
        elif _GLOB_CHARS & set(arg) and not Path(arg).exists():
            _pattern(arg, out)
        else:
            out.items.append(_file(arg, Path(os.path.expanduser(arg))))
    seen: set[str] = set()
    unique = []
    for item in out.items:
        if item.path is not None:
            key = os.path.realpath(item.path)
            if key in seen:
                out.notes.append(f"{quote_path(item.path)}: named more than once; it runs once")
                continue
            seen.add(key)
        unique.append(item)
    out.items = unique
    return out
