"""What a batch job runs on: folders, glob patterns, list files (text, CSV, Parquet), paths and URLs.

:func:`expand_sources` turns the command line's arguments into one ordered,
de-duplicated list of :class:`Source` (a local absolute path or a URL, and
its stable output name, :func:`video_id`), plus one-line errors for
arguments that name nothing. Local files are not opened here (a list of a
million paths is read without touching them); URLs are kept as written.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

# Columns of a CSV or Parquet list that name the video, in order of preference (else the first column).
LIST_COLUMNS = ("source", "path", "video", "url", "uri", "file")
LIST_SUFFIXES = (".txt", ".lst", ".csv", ".parquet")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_GLOB_CHARS = set("*?[")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


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
class Source:
    """One video: ``source`` (an absolute local path or a URL) and ``video_id`` (its output folder's name)."""

    source: str
    video_id: str

    @classmethod
    def of(cls, text: str) -> "Source":
        s = text if is_url(text) else os.path.abspath(os.path.expanduser(text))
        return cls(s, video_id(s))


@dataclass
class Sources:
    items: list[Source] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # one line each, without "error:"
    notes: list[str] = field(default_factory=list)


def _read_list(path: Path) -> list[str]:
    """The entries of a list file: text (one per line, blank lines and ``#`` comments skipped), CSV or Parquet
    (the first of :data:`LIST_COLUMNS` present, else the first column)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        names = [c for c in LIST_COLUMNS if c in table.column_names] or table.column_names[:1]
        if not names:
            return []
        return [str(v) for v in table.column(names[0]).to_pylist() if v is not None and str(v).strip()]
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


def _listed(entry: str, list_path: Path) -> str:
    """A list entry as a source: URLs as written; a relative path from the current folder, else the list's folder."""
    if is_url(entry):
        return entry
    p = Path(os.path.expanduser(entry))
    if not p.is_absolute() and not p.exists() and (list_path.parent / p).exists():
        p = list_path.parent / p
    return str(p)


def expand_sources(args: Iterable[str], *, suffixes: Iterable[str]) -> Sources:
    """The videos the arguments name, in order, each once.

    - a URL (``scheme://...``): as is;
    - a folder: every file directly inside it whose suffix is in ``suffixes``, sorted by name;
    - a pattern with ``*``, ``?`` or ``[...]`` (``**`` spans folders): the matching files with those suffixes;
    - a list file (``@FILE``, or a name ending in .txt, .lst, .csv or .parquet): the paths and URLs it names;
    - anything else: a video file (a missing one is an error line here, not a failed video).
    """
    suffixes = {s.lower() for s in suffixes}
    out = Sources()
    raw: list[str] = []
    for arg in (str(a) for a in args):
        if is_url(arg):
            raw.append(arg)
            continue
        if arg.startswith("@") or Path(arg).suffix.lower() in LIST_SUFFIXES and Path(arg).is_file():
            lst = Path(os.path.expanduser(arg[1:] if arg.startswith("@") else arg))
            try:
                entries = _read_list(lst)
            except Exception as e:  # unreadable file, bad CSV/Parquet: one line, the job goes on
                out.errors.append(f"{lst}: cannot read this list of videos ({(str(e).splitlines() or [type(e).__name__])[0]})")
                continue
            if not entries:
                out.errors.append(f"{lst}: this list names no video")
            raw.extend(_listed(e, lst) for e in entries)
            continue
        p = Path(os.path.expanduser(arg))
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")
                           and q.suffix.lower() in suffixes)
            if not found:
                out.errors.append(f"{p}: no video files in this folder")
            raw.extend(str(q) for q in found)
        elif _GLOB_CHARS & set(arg) and not p.exists():
            found = sorted(Path(m) for m in glob.glob(os.path.expanduser(arg), recursive=True))
            found = [q for q in found if q.is_file() and q.suffix.lower() in suffixes]
            if not found:
                out.errors.append(f"{arg}: no video file matches this pattern")
            raw.extend(str(q) for q in found)
        elif not p.exists():
            out.errors.append(f"{p}: file not found")
        else:
            raw.append(str(p))
    seen: set[str] = set()
    for text in raw:
        src = Source.of(text)
        if src.source in seen:
            continue
        seen.add(src.source)
        out.items.append(src)
    if len(raw) > len(out.items):
        out.notes.append(f"{len(raw) - len(out.items)} video(s) named more than once; each runs once")
    return out


__all__ = ["LIST_COLUMNS", "Source", "Sources", "expand_sources", "is_url", "video_id"]
