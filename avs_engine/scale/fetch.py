"""A video named by a URL, copied to a local temporary file for the runtime (which reads local files).

http, https and ftp go through the standard library; other schemes (s3://,
gs://, hdfs://, abfs://...) through ``pyarrow.fs`` when the installed
pyarrow was built with that filesystem (it comes with ``ray[data]``).
``file://`` and plain paths are used in place. The copy is byte-for-byte,
so the masks are those of the same file read locally; it is deleted when the
``with`` block ends.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

from ..errors import MediaError
from ..runtime.inputs import is_url
from .url_check import CheckedRedirects, UrlRefused, allowed_url

CHUNK = 1 << 20


def _suffix(url: str) -> str:
    s = Path(urllib.parse.urlparse(url).path).suffix
    return s if 0 < len(s) <= 8 else ".bin"


def _copy_limited(src, dst, url: str, max_bytes: int | None) -> int:
    n = 0
    while True:
        chunk = src.read(CHUNK)
        if not chunk:
            return n
        n += len(chunk)
        if max_bytes is not None and n > max_bytes:
            raise MediaError(f"{url}: larger than the {max_bytes / 1e6:.0f} MB limit")
        dst.write(chunk)


@contextlib.contextmanager
def local_copy(source: str, *, max_bytes: int | None = None, timeout_s: float = 60.0,
               tmp_dir: str | None = None, allow: tuple[str, ...] | None = None) -> Iterator[str]:
    """Yield a local path holding ``source`` (a path, or a URL fetched into ``tmp_dir``).

    A fetch that fails raises a one-line MediaError naming the URL; ``max_bytes``
    caps what is fetched (a local file is not checked here). ``allow``: URL
    prefixes (see ``url_check``); when given, ``source`` must be under one of
    them, its canonical form is what is fetched, and every redirect must be
    under one too (UrlRefused otherwise, before anything outside is requested)."""
    if not is_url(source):
        yield source
        return
    fetch_url = allowed_url(source, allow) if allow is not None else source
    parsed = urllib.parse.urlparse(fetch_url)
    if parsed.scheme == "file":
        yield urllib.request.url2pathname(parsed.path)
        return
    fd, tmp = tempfile.mkstemp(prefix="avs-fetch-", suffix=_suffix(source), dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as dst:
            try:
                if parsed.scheme in ("http", "https", "ftp"):
                    req = urllib.request.Request(fetch_url, headers={"User-Agent": "avs-engine"})
                    opener = (urllib.request.build_opener(CheckedRedirects(allow)) if allow is not None
                              else urllib.request.build_opener())
                    with opener.open(req, timeout=timeout_s) as src:
                        length = src.headers.get("Content-Length") if hasattr(src, "headers") else None
                        if max_bytes is not None and length and length.isdigit() and int(length) > max_bytes:
                            raise MediaError(f"{source}: larger than the {max_bytes / 1e6:.0f} MB limit")
                        _copy_limited(src, dst, source, max_bytes)
                else:
                    import pyarrow.fs as pafs

                    fs, path = pafs.FileSystem.from_uri(fetch_url)
                    with fs.open_input_stream(path) as src:
                        _copy_limited(src, dst, source, max_bytes)
            except (MediaError, UrlRefused):
                raise
            except Exception as e:  # HTTP errors, DNS, timeouts, unknown schemes: one line
                msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise MediaError(f"{source}: cannot fetch ({msg})") from None
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


__all__ = ["local_copy"]
