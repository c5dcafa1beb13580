"""The live view: a page that plays the stream with the mask tinted over it, its latency and dropped seconds.

``avs-run --view PORT`` serves, with the standard library only (``http.server``
on a daemon thread) and Pillow for JPEG:

- ``/``: the page: the newest tinted frame and a status line, both fetched five times a second (plain
  requests that finish, so the page also works in a headless browser's screenshot);
- ``/frame.jpg``: the newest JPEG: the second's sampled frame (at most :data:`VIEW_WIDTH` wide) with its
  mask tinted over it (204 before the first mask);
- ``/stream.mjpg``: the same frames as ``multipart/x-mixed-replace`` (MJPEG), for players;
- ``/status``: JSON ``{"second", "time_s", "latency_s", "dropped", "masks", "wall"}`` of the last mask.

It binds 127.0.0.1 unless told otherwise (``host``): the frames are the stream's.
"""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

VIEW_WIDTH = 640
TINT = np.array([255, 0, 64], np.float32)
ALPHA = 0.45
_BOUNDARY = "avsframe"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>avs-engine live</title>
<style>body{background:#111;color:#eee;font:15px sans-serif;margin:16px}img{display:block;max-width:100%}
#status{margin-top:8px}</style></head>
<body><img id="view" alt="live view">
<div id="status">waiting for the first mask...</div>
<script>
let shown = -1, url = null;
async function tick() {
  try {
    const s = await (await fetch('/status', {cache: 'no-store'})).json();
    if (s.masks > 0 && s.masks !== shown) {
      const r = await fetch('/frame.jpg', {cache: 'no-store'});
      if (r.status === 200) {
        if (url) URL.revokeObjectURL(url);
        url = URL.createObjectURL(await r.blob());
        document.getElementById('view').src = url;
        shown = s.masks;
      }
      document.getElementById('status').textContent =
        `second ${s.time_s.toFixed(2)}  latency ${(s.latency_s * 1000).toFixed(0)} ms  ` +
        `dropped ${s.dropped}  masks ${s.masks}`;
    }
  } catch (e) {}
}
setInterval(tick, 200); tick();
</script></body></html>
"""


def display_frame(rgb: np.ndarray) -> np.ndarray:
    """A frame for the view: uint8 ``[h, w, 3]`` at most :data:`VIEW_WIDTH` wide (aspect kept)."""
    h, w = rgb.shape[:2]
    if w <= VIEW_WIDTH:
        return np.ascontiguousarray(rgb)
    nh = max(1, round(h * VIEW_WIDTH / w))
    return np.asarray(Image.fromarray(np.ascontiguousarray(rgb)).resize((VIEW_WIDTH, nh), Image.BILINEAR))


def tint(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``frame`` uint8 ``[h, w, 3]`` with bool ``mask [H, W]`` (resized nearest to ``h, w``) tinted over it."""
    h, w = frame.shape[:2]
    if mask.shape != (h, w):
        rows = (np.arange(h) * mask.shape[0] // h).clip(0, mask.shape[0] - 1)
        cols = (np.arange(w) * mask.shape[1] // w).clip(0, mask.shape[1] - 1)
        mask = mask[rows[:, None], cols[None, :]]
    out = frame.astype(np.float32)
    out[mask] = out[mask] * (1 - ALPHA) + TINT * ALPHA
    return out.round().clip(0, 255).astype(np.uint8)


class LiveView:
    """Serves the view on ``host:port`` (port 0: any free one, see :attr:`port`) until :meth:`close`."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._seq = 0
        self._status = {"second": None, "time_s": None, "latency_s": None, "dropped": 0, "masks": 0, "wall": None}
        self._closed = False
        view = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:   # quiet: the terminal belongs to avs-run
                pass

            def do_GET(self) -> None:
                if self.path == "/":
                    self._send(PAGE.encode(), "text/html; charset=utf-8")
                elif self.path == "/status":
                    with view._cond:
                        body = json.dumps(view._status).encode()
                    self._send(body, "application/json")
                elif self.path == "/frame.jpg":
                    with view._cond:
                        jpeg = view._jpeg
                    if jpeg is None:
                        self.send_response(204)
                        self.end_headers()
                    else:
                        self._send(jpeg, "image/jpeg")
                elif self.path == "/stream.mjpg":
                    self._stream()
                else:
                    self.send_error(404)

            def _send(self, body: bytes, kind: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                seen = -1
                try:
                    while True:
                        with view._cond:
                            view._cond.wait_for(lambda: view._closed or (view._jpeg is not None and view._seq != seen), 1.0)
                            if view._closed:
                                return
                            if view._jpeg is None or view._seq == seen:
                                continue
                            jpeg, seen = view._jpeg, view._seq
                        self.wfile.write(f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n".encode())
                        self.wfile.write(jpeg + b"\r\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return

        self._server = ThreadingHTTPServer((host, int(port)), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="avs-live-view", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}/"

    def show(self, frame: np.ndarray, mask: np.ndarray, doc: dict) -> None:
        """A new mask: ``frame`` uint8 ``[h, w, 3]`` (:func:`display_frame`), ``mask`` bool ``[H, W]``, its line ``doc``."""
        buf = io.BytesIO()
        Image.fromarray(tint(frame, mask)).save(buf, format="JPEG", quality=85)
        with self._cond:
            self._jpeg, self._seq = buf.getvalue(), self._seq + 1
            self._status = {"second": doc["second"], "time_s": doc["time_s"], "latency_s": doc["latency_s"],
                            "dropped": doc["dropped"], "masks": self._status["masks"] + 1, "wall": doc["wall"]}
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()


__all__ = ["LiveView", "display_frame", "tint", "PAGE"]
