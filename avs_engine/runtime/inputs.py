"""The videos a command's arguments name: files, folders, glob patterns, list files and (for jobs) URLs.

:func:`expand_inputs` turns the arguments into one ordered list of
:class:`Input` (a local file or a URL, with its stable output name
:attr:`Input.video_id`), in which an argument that names nothing is an item
with a one-line ``error`` in its place, plus notes about what a folder or
pattern held that is not a video. Nothing here stops a run: the caller
reports the errors and runs the rest. ``avs-run`` checks every file it is
given; a batch job (``job=True``) also takes URLs and CSV/Parquet lists and
leaves files unopened (a list of a million paths is read without touching them).
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import quote_path

# What a folder or a pattern contributes: files with these suffixes (case-insensitive).
VIDEO_SUFFIXES = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".flv", ".wmv",
    ".3gp", ".ogv", ".asf",
})
# Columns of a CSV or Parquet list that name the video, in order of preference (else the first column).
LIST_COLUMNS = ("source", "path", "video", "url", "uri", "file")
LIST_SUFFIXES = (".txt", ".lst", ".csv", ".parquet")  # list files a job takes without the @
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB_CHARS = set("*?[")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_NAMES_SHOWN = 5


def is_url(text: str) -> bool:
    """``scheme://...`` (http, https, ftp, s3, gs, ...; ``file://`` too)."""
    return bool(_URL.match(text))


def video_id(source: str) -> str:
    """The output folder's name for ``source``: its file stem (unsafe characters as ``_``) and 8 hex digits of
    the SHA-1 of the whole source string, e.g. ``clip-3f2a9c1d``. The same source always gets the same name,
    and two sources with the same stem never share one, whatever else the job holds."""
    tail = source.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    stem = _UNSAFE.sub("_", Path(tail).stem).strip("._") or "video"
    return f"{stem[:80]}-{hashlib.sha1(source.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


@dataclass(frozen=True)
class Input:
    """One video to run (a local ``path`` or a ``url``), or why an argument gave none (``error``, one line
    without ``error:``). ``arg``: the argument it came from."""

    arg: str
    path: Path | None = None
    url: str | None = None
    error: str | None = None

    @property
    def source(self) -> str:
        """The video as a job names it: the URL, or the file's absolute path (the argument for an error)."""
        return self.url or (os.path.abspath(self.path) if self.path is not None else self.arg)

    @property
    def video_id(self) -> str:
        return video_id(self.source)

    @classmethod
    def of(cls, text: str) -> "Input":
        """A job's source as it is stored (a URL, or a path made absolute)."""
        return cls(text, url=text) if is_url(text) else cls(text, path=Path(os.path.abspath(os.path.expanduser(text))))


@dataclass
class Inputs:
    items: list[Input] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def videos(self) -> list[Input]:
        return [i for i in self.items if i.error is None]

    @property
    def errors(self) -> list[str]:
        return [i.error for i in self.items if i.error is not None]


def _file(arg: str, path: Path, check: bool, where: str = "") -> Input:
    shown = quote_path(path)
    if not path.exists():
        return Input(arg, error=f"{shown}: file not found{where}")
    if not check:
        return Input(arg, path=path)
    if path.is_dir():
        return Input(arg, error=f"{shown}: is a folder{where}; a list names video files, one per line")
    try:
        with open(path, "rb"):
            return Input(arg, path=path)
    except OSError as e:
        return Input(arg, error=f"{shown}: cannot read ({e.strerror.lower() if e.strerror else type(e).__name__}){where}")


def _found(arg: str, shown: str, entries: list[Path], none: str, out: Inputs, check: bool) -> None:
    """The video files among ``entries`` (a folder's listing or a pattern's matches); a note for the rest."""
    videos = [p for p in entries if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
    skipped = [p.name + ("/" if p.is_dir() else "") for p in entries if p not in videos]
    if skipped:
        names = ", ".join(quote_path(n) for n in skipped[:_NAMES_SHOWN]) + (", ..." if len(skipped) > _NAMES_SHOWN else "")
        one = len(skipped) == 1
        out.notes.append(f"{shown}: skipped {len(skipped)} entr{'y' if one else 'ies'} that {'is' if one else 'are'} "
                         f"not a video ({names})")
    if not videos:
        out.items.append(Input(arg, error=f"{shown}: {none}"))
    out.items.extend(_file(arg, p, check) for p in videos)


def _read_list(path: Path) -> list[str]:
    """The entries of a list file: text (one per line, blank lines and ``#`` comments skipped), CSV or Parquet
    (the first of :data:`LIST_COLUMNS` present, else the first column)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        names = [c for c in LIST_COLUMNS if c in table.column_names] or table.column_names[:1]
        return [str(v) for v in table.column(names[0]).to_pylist() if v is not None and str(v).strip()] if names else []
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    if suffix == ".csv":
        import csv

        rows = list(csv.reader(text.splitlines()))
        if not rows:
            return []
        header = [h.strip().lower() for h in rows[0]]
        col = next((header.index(c) for c in LIST_COLUMNS if c in header), None)
        body = rows[1:] if col is not None else rows  # no known header: every row is data, first column
        col = col or 0
        return [r[col].strip() for r in body if len(r) > col and r[col].strip()]
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _list_file(arg: str, lst: Path, out: Inputs, job: bool) -> None:
    try:
        entries = _read_list(lst) if job else [ln.strip() for ln in lst.read_text(
            encoding="utf-8", errors="surrogateescape").splitlines()]
    except Exception as e:  # unreadable file, bad CSV/Parquet: one line, the run goes on
        why = (e.strerror or type(e).__name__).lower() if isinstance(e, OSError) else (str(e).splitlines() or [type(e).__name__])[0]
        out.items.append(Input(arg, error=f"{quote_path(lst)}: cannot read this list of videos ({why})"))
        return
    n = 0
    for lineno, entry in enumerate(entries, 1):
        if not entry or entry.startswith("#"):
            continue
        n += 1
        if is_url(entry) and job:
            out.items.append(Input(arg, url=entry))
            continue
        p = Path(os.path.expanduser(entry))
        if not p.is_absolute() and not p.exists() and (lst.parent / p).exists():
            p = lst.parent / p  # relative to the list's folder when not found from here
        out.items.append(Input(arg, path=p) if job else _file(arg, p, True, f" (listed in {quote_path(lst)} line {lineno})"))
    if n == 0:
        out.items.append(Input(arg, error=f"{quote_path(lst)}: this list names no video"))


def expand_inputs(args, *, job: bool = False) -> Inputs:
    """The videos the arguments name, in order, each once.

    - a file: run as is, whatever its suffix;
    - a folder: every video file directly inside it (by suffix, sorted by name; hidden files
      ignored); other entries are skipped with a note;
    - a pattern with ``*``, ``?`` or ``[...]`` (quoted, so that the shell leaves it to us;
      ``**`` spans folders) that is not an existing path: the video files it matches;
    - ``@FILE``: the paths FILE lists, one per line (blank lines and ``#`` comments ignored);
      a relative path is taken from the current folder, else from FILE's folder.

    ``job``: a batch job's inputs: URLs (``scheme://...``) too, list files also without the ``@``
    (``.txt``, ``.lst``, ``.csv``, ``.parquet``: a CSV/Parquet list names the video in its
    ``source``/``path``/... column) and files are not opened here.
    """
    out = Inputs()
    for arg in (str(a) for a in args):
        p = Path(os.path.expanduser(arg))
        if job and is_url(arg):
            out.items.append(Input(arg, url=arg))
        elif arg.startswith("@") and len(arg) > 1 or job and p.suffix.lower() in LIST_SUFFIXES and p.is_file():
            _list_file(arg, Path(os.path.expanduser(arg[1:])) if arg.startswith("@") else p, out, job)
        elif p.is_dir():
            try:
                entries = sorted(e for e in p.iterdir() if not e.name.startswith("."))
            except OSError as e:
                out.items.append(Input(arg, error=f"{quote_path(p)}: cannot list this folder ({(e.strerror or type(e).__name__).lower()})"))
                continue
            _found(arg, quote_path(p), entries, "no video files in this folder "
                   f"(suffixes: {', '.join(sorted(VIDEO_SUFFIXES))})", out, not job)
        elif _GLOB_CHARS & set(arg) and not p.exists():
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(arg), recursive=True))
            _found(arg, quote_path(arg), matches, "matches no video file" if matches else "no file matches this pattern",
                   out, not job)
        else:
            out.items.append(_file(arg, p, not job))
    seen: set[str] = set()
    unique = []
    for item in out.items:
        if item.error is None:
            key = item.url or os.path.realpath(item.path)
            if key in seen:
                continue
            seen.add(key)
        unique.append(item)
    if len(unique) < len(out.items):
        out.notes.append(f"{len(out.items) - len(unique)} video(s) named more than once; each runs once")
    out.items = unique
    return out


__all__ = ["Input", "Inputs", "LIST_COLUMNS", "VIDEO_SUFFIXES", "expand_inputs", "is_url", "video_id"]
