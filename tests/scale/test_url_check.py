"""URL allow-lists compare canonical URLs and check redirects: every bypass of a string prefix is refused, and a
local HTTP server that logs its requests never sees one outside the allowed prefix."""

from __future__ import annotations

import http.server
import threading

import pytest

from avs_engine.errors import MediaError
from avs_engine.scale.fetch import local_copy
from avs_engine.scale.url_check import UrlRefused, allowed_url, canonical, remove_dot_segments

GOOD_BYTES = b"GOOD-VIDEO-BYTES"


class LoggingServer:
    """``/ok/good.mp4`` and ``/secret.ts``, plus redirects, on 127.0.0.1; ``paths`` lists every request line's path."""

    def __init__(self) -> None:
        paths = self.paths = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                paths.append(self.path)
                redirects = {"/ok/out": "/secret.ts", "/ok/out-abs": f"http://127.0.0.1:{self.server.server_port}/secret.ts",
                             "/ok/out-dots": "/ok/../secret.ts", "/ok/in": "/ok/good.mp4",
                             "/ok/out-other-host": "http://localhost.invalid/ok/good.mp4"}
                if self.path in redirects:
                    self.send_response(302)
                    self.send_header("Location", redirects[self.path])
                    self.end_headers()
                    return
                body = {"/ok/good.mp4": GOOD_BYTES, "/secret.ts": b"SECRET"}.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def outside(self) -> list[str]:
        """Requested paths that a server resolving dot segments and percent-encoding would serve from outside /ok/."""
        def inside(p: str) -> bool:
            try:
                segs = canonical("http://h" + p).segments
            except UrlRefused:
                return False
            return len(segs) > 1 and segs[0] == "ok" and p.startswith("/ok/")
        return [p for p in self.paths if not inside(p)]

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture()
def web():
    s = LoggingServer()
    yield s
    s.close()


def bypasses(base: str) -> list[str]:
    """URLs that a string prefix ``{base}/ok/`` lets through but that reach (or could reach) outside ``/ok/``."""
    hostport = base.split("://", 1)[1]
    return [
        f"{base}/ok/../secret.ts",
        f"{base}/ok/%2e%2e/secret.ts",
        f"{base}/ok/%2E%2e/secret.ts",
        f"{base}/ok/.%2e/secret.ts",
        f"{base}/ok/%2e%2e%2fsecret.ts",
        f"{base}/ok/..%2fsecret.ts",
        f"{base}/ok/sub/../../secret.ts",
        f"{base}/ok/..\\secret.ts",
        f"{base}/ok/%5c..%5csecret.ts",
        f"{base}/ok/%00/../secret.ts",
        f"http://user:pw@{hostport}/ok/good.mp4",
        f"http://{hostport}@localhost.invalid/ok/good.mp4",
        f"{base}/okay/../secret.ts",
        f"{base}/ok/./../secret.ts",
    ]


def test_canonical_form():
    c = canonical("HTTP://Example.COM/a/./b/../c/%7Efile%2emp4?x=1#frag")
    assert (c.scheme, c.host, c.port, c.segments, c.query) == ("http", "example.com", 80, ("a", "c", "~file.mp4"), "x=1")
    assert c.text() == "http://example.com:80/a/c/~file.mp4?x=1"
    assert canonical("https://h/").port == 443 and canonical("https://h:8443/x").port == 8443
    assert remove_dot_segments(["a", "b", "..", "..", "..", "c"]) == ["c"]
    assert remove_dot_segments(["a", ".."]) == [""]


def test_string_prefix_bypasses_are_refused(web):
    allow = (f"{web.base}/ok/",)
    for url in bypasses(web.base):
        assert url.startswith(allow[0]) or "@" in url or "/okay" in url
        with pytest.raises(UrlRefused):
            allowed_url(url, allow)
        with pytest.raises(UrlRefused), local_copy(url, allow=allow):
            pass
    assert web.paths == []   # refused before any request


def test_equivalent_spellings_are_allowed_and_fetch_the_canonical_url(web):
    port = web.base.rsplit(":", 1)[1]
    allow = (f"{web.base}/ok",)   # without the trailing slash: still a whole segment
    for url in (f"{web.base}/ok/good.mp4", f"HTTP://127.0.0.1:{port}/ok/%67ood.mp4", f"{web.base}/ok/x/../good.mp4",
                f"{web.base}/ok/./good.mp4"):
        with local_copy(url, allow=allow) as path:
            assert open(path, "rb").read() == GOOD_BYTES
    assert set(web.paths) == {"/ok/good.mp4"}
    with pytest.raises(UrlRefused):
        allowed_url(f"{web.base}/okay.mp4", allow)
    with pytest.raises(UrlRefused):   # another port of the same host
        allowed_url("http://127.0.0.1:1/ok/good.mp4", allow)
    assert allowed_url("http://example.com/ok/a.mp4", ("http://EXAMPLE.com:80/ok/",)) == "http://example.com:80/ok/a.mp4"


def test_redirects_are_followed_only_inside_the_prefix(web):
    allow = (f"{web.base}/ok/",)
    with local_copy(f"{web.base}/ok/in", allow=allow) as path:
        assert open(path, "rb").read() == GOOD_BYTES
    for hop in ("out", "out-abs", "out-dots", "out-other-host"):
        with pytest.raises(UrlRefused, match="redirected to"), local_copy(f"{web.base}/ok/{hop}", allow=allow):
            pass
    assert web.outside() == [], web.paths
    # Without an allow-list (a batch job's own URL list) redirects are followed as before.
    with pytest.raises(MediaError), local_copy(f"{web.base}/ok/nowhere", allow=None):
        pass
