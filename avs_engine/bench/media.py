"""Generated benchmark videos: fast to write at any length, with real content to decode.

Each second has its own background colour and tone; a bright square moves
across the frame (so the encoder has motion to code, and the decoder real
work); the audio is a tone per second. H.264 (libx264, ultrafast) + AAC in
mp4, as most user videos are. Ten minutes of 320x180 at 25 fps write in
well under a minute on one core.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

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
    layout = {1: "mono", 2: "stereo"}[channels]
    side = max(4, min(w, h) // 4)  # the moving square
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=Fraction(fps))
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"crf": "23", "preset": "ultrafast"}
        as_ = out.add_stream("aac", rate=sample_rate, layout=layout)
        as_.time_base = Fraction(1, sample_rate)
        chunk = as_.codec_context.frame_size or 1024
        audio_pos = 0
        n_samples = seconds * sample_rate

        def audio_until(t: float) -> None:
            nonlocal audio_pos
            while audio_pos < n_samples and audio_pos / sample_rate <= t:
                idx = np.arange(audio_pos, min(audio_pos + chunk, n_samples))
                freq = 300.0 + 100.0 * ((idx // sample_rate) % 12)  # phase jumps at second boundaries: fine here
                tone = (0.5 * np.sin(2 * np.pi * freq * idx / sample_rate)).astype(np.float32)
                frame = av.AudioFrame.from_ndarray(np.repeat(tone[None], channels, 0), format="fltp", layout=layout)
                frame.sample_rate, frame.pts, frame.time_base = sample_rate, audio_pos, Fraction(1, sample_rate)
                for pkt in as_.encode(frame):
                    out.mux(pkt)
                audio_pos += idx.size

        img = np.empty((h, w, 3), np.uint8)
        for i in range(n_frames):
            audio_until(i / fps)
            sec = i // fps
            img[:] = _PALETTE[sec % len(_PALETTE)]
            x = (i * 4) % max(1, w - side)
            y = (h - side) // 2 + int((h - side) / 3 * np.sin(i / fps))
            img[y:y + side, x:x + side] = 255
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
        audio_until(float("inf"))
        for pkt in as_.encode():
            out.mux(pkt)
    return {
        "path": str(path), "seconds": int(seconds), "fps": int(fps), "width": w, "height": h,
        "n_frames": n_frames, "sample_rate": sample_rate, "channels": channels,
        "bytes": path.stat().st_size,
    }
