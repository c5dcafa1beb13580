"""Generated benchmark videos: fast to write at any length, with real content to decode.

Each second has its own background colour and tone; a bright square moves
across the frame (so the encoder has motion to code, and the decoder real
work); the audio is a tone per second. H.264 (libx264, ultrafast) + AAC in
mp4, as most user videos are. Ten minutes of 320x180 at 25 fps write in
well under a minute on one core.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.video import write_av

_PALETTE = np.array(
    [(220, 30, 30), (30, 200, 40), (30, 60, 220), (230, 220, 40), (200, 40, 210), (40, 210, 220),
     (240, 140, 20), (120, 40, 160), (128, 128, 128), (20, 110, 90), (250, 170, 200), (110, 70, 20)],
    np.uint8,
)


def make_bench_video(
    path: str | Path,
    seconds: int,
    fps: int = 25,
    size: tuple[int, int] = (640, 360),
    sample_rate: int = 44100,
    channels: int = 2,
) -> dict:
    """Write ``seconds`` of video+audio to ``path`` (mp4); returns a description of it.

    ``size`` is (width, height), both even. Returns ``{"path", "seconds",
    "fps", "width", "height", "n_frames", "sample_rate", "channels",
    "bytes"}``.
    """
    path = Path(path)
    w, h = int(size[0]), int(size[1])
    if w % 2 or h % 2:
        raise ValueError(f"make_bench_video: width and height must be even, got {w}x{h}")
    n_frames = int(seconds * fps)
    side = max(4, min(w, h) // 4)  # the moving square
    img = np.empty((h, w, 3), np.uint8)

    def frame_at(i: int) -> np.ndarray:
        img[:] = _PALETTE[(i // fps) % len(_PALETTE)]
        x = (i * 4) % max(1, w - side)
        y = (h - side) // 2 + int((h - side) / 3 * np.sin(i / fps))
        img[y:y + side, x:x + side] = 255
        return img

    def audio_at(start: int, n: int) -> np.ndarray:
        idx = np.arange(start, start + n)
        freq = 300.0 + 100.0 * ((idx // sample_rate) % 12)  # phase jumps at second boundaries: fine here
        return np.repeat((0.5 * np.sin(2 * np.pi * freq * idx / sample_rate)).astype(np.float32)[None], channels, 0)

    write_av(path, frame_at, n_frames, fps, (w, h), audio_at, int(seconds * sample_rate), sample_rate, channels,
             crf=23, preset="ultrafast")
    return {
        "path": str(path), "seconds": int(seconds), "fps": int(fps), "width": w, "height": h,
        "n_frames": n_frames, "sample_rate": sample_rate, "channels": channels,
        "bytes": path.stat().st_size,
    }
