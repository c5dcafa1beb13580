"""URL allow-lists that compare what will be fetched, not the text that was sent.

A URL is first put in one canonical form (:func:`canonical`): scheme and
host in lower case, the scheme's default port written out, the path's
percent-encoding decoded (``%2e`` is a dot, ``%2f`` a slash), then its dot
segments removed as RFC 3986 section 5.2.4 says, and re-encoded one way.
URLs with a user name or password, a backslash, a control character or an
encoded NUL are refused outright. An allow-list entry is put in the same
form, and a URL is allowed when scheme, host and port are equal and the
entry's path segments are the first segments of the URL's path (so
``/ok`` allows ``/ok/a.mp4`` but not ``/okay.mp4``).

What is fetched is the canonical URL that passed (never the text sent), and
each redirect must pass the same check (:class:`CheckedRedirects`).
"""

from __future__ import annotations

import re
import urllib.parse
import urllib.request
from dataclasses import dataclass

from ..errors import AvsError

DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21, "ws": 80, "wss": 443}
_SEGMENT_SAFE = "!$&'()*+,;=:@-._~"
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


class UrlRefused(AvsError):
    """A URL that is malformed for our purposes or outside every allowed prefix (its message is one line)."""


@dataclass(frozen=True)
class CanonicalUrl:
    """``scheme://host:port/segments...?query``; ``segments`` are decoded path segments."""

    scheme: str
    host: str
    port: int | None
    segments: tuple[str, ...]
    query: str = ""

    def text(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        netloc = host if self.port is None else f"{host}:{self.port}"
        path = "/" + "/".join(urllib.parse.quote(s, safe=_SEGMENT_SAFE) for s in self.segments)
        return urllib.parse.urlunsplit((self.scheme, netloc, path, self.query, ""))

    def under(self, prefix: "CanonicalUrl") -> bool:
        """Same scheme, host and port, and ``prefix``'s path segments (a trailing empty one dropped) first. A
        prefix without a port (only for a scheme with no default one, e.g. ``tcp://127.0.0.1``) takes any port."""
        if (self.scheme, self.host) != (prefix.scheme, prefix.host) or prefix.port not in (None, self.port):
            return False
        want = prefix.segments[:-1] if prefix.segments and prefix.segments[-1] == "" else prefix.segments
        return self.segments[:len(want)] == want


def remove_dot_segments(segments: list[str]) -> list[str]:
    """RFC 3986 5.2.4 over decoded segments: ``.`` dropped, ``..`` removes the one before (never above the root)."""
    out: list[str] = []
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return out


def canonical(url: str) -> CanonicalUrl:
    """``url`` in canonical form (see the module's docstring); UrlRefused for what cannot be compared safely."""
    if _CONTROL.search(url):
        raise UrlRefused(f"{url!r}: a URL with spaces or control characters is not accepted")
    if "\\" in url:
        raise UrlRefused(f"{url}: a URL with a backslash is not accepted")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise UrlRefused(f"{url}: not a valid URL ({e})") from None
    scheme = parts.scheme.lower()
    if not scheme or not parts.netloc:
        raise UrlRefused(f"{url}: not an absolute URL (scheme://host/path)")
    if "@" in parts.netloc:
        raise UrlRefused(f"{url}: a URL with a user name or password is not accepted")
    host = (parts.hostname or "").rstrip(".")
    if not host or "%" in host:
        raise UrlRefused(f"{url}: no valid host name")
    raw = parts.path or "/"
    low = raw.lower()
    if "%00" in low or "%5c" in low:
        raise UrlRefused(f"{url}: an encoded NUL or backslash in the path is not accepted")
    decoded = urllib.parse.unquote(raw, errors="strict")
    segments = remove_dot_segments(decoded.split("/")[1:])
    return CanonicalUrl(scheme, host, port if port is not None else DEFAULT_PORTS.get(scheme), tuple(segments),
                        parts.query)


def allowed_url(url: str, allow: tuple[str, ...] | list[str]) -> str:
    """The canonical URL to fetch when ``url`` is under one of the URL prefixes in ``allow``; UrlRefused if not.

    Entries of ``allow`` that are not URLs (local folders) are ignored here."""
    got = canonical(url)
    for entry in allow:
        if "://" not in entry:
            continue
        try:
            prefix = canonical(entry)
        except UrlRefused:
            continue
        if got.under(prefix):
            return got.text()
    raise UrlRefused(f"{url}: not under any --allow-source prefix of this server")


class CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirect handling, with each target checked by ``allowed_url`` against ``allow`` first (and then
    fetched in its canonical form); a target outside raises UrlRefused, so nothing outside is requested."""

    def __init__(self, allow: tuple[str, ...] | list[str]) -> None:
        self.allow = tuple(allow)

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        try:
            target = allowed_url(urllib.parse.urljoin(req.full_url, newurl), self.allow)
        except UrlRefused as e:
            raise UrlRefused(f"redirected to {e}") from None
        return super().redirect_request(req, fp, code, msg, headers, target)


__all__ = ["CanonicalUrl", "CheckedRedirects", "UrlRefused", "allowed_url", "canonical", "remove_dot_segments"]
