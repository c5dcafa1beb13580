"""The live view: the page, the status, and an MJPEG stream whose frames carry the tint where the mask is;
with Chromium installed, a headless screenshot of the page shows the tint (skipped without it)."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from avs_engine.runtime.live_view import LiveView, tint


def _scene():
    rng = np.random.default_rng(3)
    frame = (rng.integers(0, 60, (120, 200, 3))).astype(np.uint8) + 60   # dark grey noise
    mask = np.zeros((60, 100), bool)
    mask[10:40, 50:90] = True   # at half size: rows 20-80, cols 100-180 of the frame
    return frame, mask


def _redness(rgb: np.ndarray) -> float:
    rgb = rgb.astype(np.float32)
    return float((rgb[..., 0] - rgb[..., 1]).mean())


def test_tint_marks_the_mask_only():
    frame, mask = _scene()
    out = tint(frame, mask)
    assert _redness(out[22:78, 102:178]) > 60 and abs(_redness(out[:, :90])) < 10


def _read_first_jpeg(url: str) -> np.ndarray:
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        head = b""
        while b"\r\n\r\n" not in head:
            head += r.read(1)
        n = int([h for h in head.decode().split("\r\n") if h.lower().startswith("content-length")][0].split(":")[1])
        return np.asarray(Image.open(io.BytesIO(r.read(n))).convert("RGB"))


def test_view_serves_page_status_and_tinted_frames():
    view = LiveView(0)
    try:
        page = urllib.request.urlopen(view.url, timeout=10).read().decode()
        assert "/frame.jpg" in page and "/status" in page
        assert urllib.request.urlopen(view.url + "frame.jpg", timeout=10).status == 204   # nothing yet
        frame, mask = _scene()
        view.show(frame, mask, {"second": 3, "time_s": 3.0, "latency_s": 0.123, "dropped": 2, "wall": "x"})
        status = json.loads(urllib.request.urlopen(view.url + "status", timeout=10).read())
        assert status["latency_s"] == 0.123 and status["dropped"] == 2 and status["masks"] == 1
        for jpeg in (_read_first_jpeg(view.url + "stream.mjpg"),
                     np.asarray(Image.open(io.BytesIO(urllib.request.urlopen(view.url + "frame.jpg", timeout=10).read())))):
            assert jpeg.shape == (120, 200, 3)
            assert _redness(jpeg[25:75, 105:175]) > 50 and abs(_redness(jpeg[:, :90])) < 12
    finally:
        view.close()


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="Chromium is not installed (apt-get install chromium)")
def test_headless_chromium_screenshot_shows_the_tint(tmp_path):
    view = LiveView(0)
    try:
        frame, mask = _scene()
        doc = {"second": 0, "time_s": 0.0, "latency_s": 0.1, "dropped": 0, "wall": "x"}
        view.show(frame, mask, doc)
        shot = tmp_path / "shot.png"
        proc = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                               "--window-size=400,300", "--virtual-time-budget=5000", f"--screenshot={shot}", view.url],
                              capture_output=True, text=True, timeout=120)
        assert shot.is_file(), proc.stderr[-2000:]
        img = np.asarray(Image.open(shot).convert("RGB"))
        # body margin 16 px: the frame's pixel (y, x) is at (16 + y, 16 + x); the mask covers rows 20-80, cols 100-180
        assert _redness(img[16 + 25:16 + 75, 16 + 105:16 + 175]) > 50
        assert abs(_redness(img[16 + 5:16 + 115, 16 + 5:16 + 85])) < 12
    finally:
        view.close()
