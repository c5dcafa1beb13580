"""How FFmpeg may open a media file: as it likes (the user's own files), or narrowly (bytes from strangers).

FFmpeg's demuxers can do much more than read one file: an HLS or DASH
playlist names other files (or URLs) that the demuxer then opens, a concat
list does the same, an image-sequence pattern globs a folder, and protocols
such as ``subfile:``, ``tee:`` or ``data:`` reach beyond the named path.
For an upload, a fetched URL or a URL from a batch list that is a way to
make the server read its own files and send them back in the overlay.

The strict policy opens a file with the ``file`` protocol only and lets
FFmpeg pick among :data:`ACCEPTED_FORMATS` (containers that hold their
media inside them); anything else is refused before its header is read,
so nothing a playlist names is ever opened. The decision is FFmpeg's own
(``protocol_whitelist`` and ``format_whitelist``); this module only picks
the options and words the refusal.

Which files get the strict policy: paths registered with :func:`strict`
(for the duration of a ``with`` block; any thread of the process), or every
file while :func:`strict_everywhere` is on (``avs-run --untrusted``).
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Iterator

# FFmpeg demuxer names (as matched against their comma-separated names, e.g. "mov,mp4,m4a,3gp,3g2,mj2").
ACCEPTED_FORMATS = ("mov", "mp4", "matroska", "webm", "avi", "mpegts", "mpeg", "flv", "ogg", "asf")
ACCEPTED_PROTOCOLS = ("file",)

# What the refused bytes look like, for the message only (FFmpeg's refusal does not name the format).
_SIGNATURES = (
    (b"#EXTM3U", "an HLS playlist"),
    (b"ffconcat", "an FFmpeg concat list"),
    (b"<MPD", "a DASH manifest"),
    (b"<?xml", "an XML document (a DASH manifest or similar playlist)"),
    (b"[playlist]", "a playlist"),
)

_lock = threading.Lock()
_strict_paths: dict[str, int] = {}
_everywhere = False


def _key(path: str | os.PathLike) -> str:
    return os.path.realpath(os.fspath(path))


@contextlib.contextmanager
def strict(path: str | os.PathLike) -> Iterator[str]:
    """Within the block, every open of ``path`` (by this package, in any thread) uses the strict policy."""
    key = _key(path)
    with _lock:
        _strict_paths[key] = _strict_paths.get(key, 0) + 1
    try:
        yield os.fspath(path)
    finally:
        with _lock:
            n = _strict_paths.pop(key, 1) - 1
            if n > 0:
                _strict_paths[key] = n


def strict_everywhere(on: bool = True) -> None:
    """Apply the strict policy to every file this process opens (``avs-run --untrusted``)."""
    global _everywhere
    _everywhere = bool(on)


def is_strict(path: str | os.PathLike) -> bool:
    """Whether opening ``path`` now uses the strict policy."""
    if _everywhere:
        return True
    with _lock:
        return bool(_strict_paths) and _key(path) in _strict_paths


def open_options(path: str | os.PathLike) -> dict[str, str]:
    """FFmpeg format options for opening ``path`` (empty: FFmpeg's defaults)."""
    if not is_strict(path):
        return {}
    return {"protocol_whitelist": ",".join(ACCEPTED_PROTOCOLS), "format_whitelist": ",".join(ACCEPTED_FORMATS)}


def _looks_like(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return None
    head = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    for sig, what in _SIGNATURES:
        if head.startswith(sig) or (sig == b"<MPD" and b"<MPD" in head):
            return what
    return None


def names_other_files(path: str) -> bool:
    """Whether ``path`` starts like a playlist, concat list or manifest (by its first bytes)."""
    return _looks_like(path) is not None


def refusal(path: str) -> str:
    """The one-line reason (without the path) for a file the strict policy did not open."""
    what = _looks_like(path)
    accepted = "MP4/MOV, Matroska/WebM, AVI, MPEG-TS/PS, FLV, Ogg, ASF"
    if what:
        return (f"refused: this is {what}, which names other files or URLs to read; "
                f"send the media file itself ({accepted})")
    return f"refused: not one of the container formats accepted from untrusted sources ({accepted})"


__all__ = ["ACCEPTED_FORMATS", "ACCEPTED_PROTOCOLS", "is_strict", "names_other_files", "open_options", "refusal", "strict",
           "strict_everywhere"]
