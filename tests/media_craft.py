"""Valid files that real sources produce and PyAV's plain muxing does not: made here with PyAV alone.

- :func:`make_size_change_ts`: an MPEG-TS whose H.264 stream changes resolution mid-stream (a second encoder's
  packets, with their own in-band SPS/PPS, muxed into the same stream), as a broadcast capture or a spliced
  stream has.
- :func:`make_edit_list_mp4`: an MP4 whose first frames lie before the presented start (an edit list hides
  them), as a stream-copied cut from a long-GOP source has.
- :func:`make_tagged_video`: a video with colour tags (primaries, transfer, matrix, range) and pixel format of
  choice: HDR10 HEVC (bt2020 / smpte2084 / bt2020nc, 10-bit, optionally with its mastering display and content
  light level SEI) or full-range MJPEG.

Every frame shows ``frame_image`` (its index in the bottom bits), so tests can tell which frame is which.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests.media_factory import frame_image


def _audio(out, seconds: float, rate: int = 48000, start_s: float = 0.0):
    """An AAC stream and a function that encodes ``seconds`` of a 440 Hz tone into it, from ``start_s``."""
    a = out.add_stream("aac", rate=rate, layout="stereo")

    def write():
        n, step = int(seconds * rate), 1024
        t = np.arange(n) / rate
        x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for i in range(0, n, step):
            chunk = np.stack([x[i:i + step]] * 2)
            f = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout="stereo")
            f.sample_rate, f.pts = rate, i + int(round(start_s * rate))
            for p in a.encode(f):
                out.mux(p)
        for p in a.encode(None):
            out.mux(p)
    return write


def make_size_change_ts(path, sizes=((320, 240), (640, 480)), seconds_each: float = 2.0, fps: int = 10) -> dict:
    """MPEG-TS, H.264 + AAC: ``seconds_each`` at ``sizes[0]``, then at ``sizes[1]`` (one stream, new SPS)."""
    path = Path(path)
    colors = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40)]
    with av.open(str(path), "w", format="mpegts") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height = sizes[0]
        vs.pix_fmt = "yuv420p"
        vs.codec_context.time_base = Fraction(1, fps)
        write_audio = _audio(out, seconds_each * len(sizes))
        index = 0
        for part, size in enumerate(sizes):
            enc = vs.codec_context if part == 0 else av.CodecContext.create("libx264", "w")
            if part:
                enc.width, enc.height = size
                enc.pix_fmt = "yuv420p"
                enc.time_base = Fraction(1, fps)
                enc.framerate = Fraction(fps)
            for _ in range(int(seconds_each * fps)):
                img = frame_image(index, colors[int(index / fps) % len(colors)], size)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
                frame.pts, frame.time_base = index, Fraction(1, fps)
                for p in enc.encode(frame):
                    p.stream = vs
                    out.mux(p)
                index += 1
            for p in enc.encode(None):
                p.stream = vs
                out.mux(p)
        write_audio()
    return {"path": path, "sizes": sizes, "seconds": seconds_each * len(sizes), "fps": fps}


def make_edit_list_mp4(path, hidden_s: float = 0.5, shown_s: float = 4.5, fps: int = 10) -> dict:
    """MP4, H.264 + AAC: ``hidden_s + shown_s`` seconds of frames whose first ``hidden_s`` have negative
    timestamps, so the muxer writes an edit list that starts the presentation after them."""
    path = Path(path)
    colors = [(200, 40, 40), (40, 200, 40), (40, 40, 200), (200, 200, 40), (200, 40, 200), (40, 200, 200)]
    hidden = int(round(hidden_s * fps))
    total = hidden + int(round(shown_s * fps))
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height = 160, 96
        vs.pix_fmt = "yuv420p"
        vs.codec_context.time_base = Fraction(1, fps)
        vs.options = {"bf": "0"}
        write_audio = _audio(out, shown_s)
        for i in range(total):
            img = frame_image(i, colors[int((i - hidden) / fps) % len(colors)] if i >= hidden else (0, 0, 0), (160, 96))
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for p in vs.encode(frame):
                p.pts -= hidden
                p.dts -= hidden
                out.mux(p)
        for p in vs.encode(None):
            p.pts -= hidden
            p.dts -= hidden
            out.mux(p)
        write_audio()
    return {"path": path, "hidden_s": hidden_s, "shown_s": shown_s, "fps": fps}


HDR10 = {"color_primaries": 9, "color_trc": 16, "colorspace": 9, "color_range": 1}   # bt2020, smpte2084, bt2020nc, tv
FULL_RANGE_601 = {"color_primaries": 6, "color_trc": 6, "colorspace": 6, "color_range": 2}  # smpte170m, pc
# HDR10 static metadata as x265 takes it: a P3-D65 mastering display of 1000 cd/m² (min 0.0001; chromaticities in
# units of 0.00002, luminance in 0.0001 cd/m²), MaxCLL 1000 and MaxFALL 400 cd/m².
HDR10_STATIC = "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1):max-cll=1000,400"


def make_tagged_video(path, codec: str, pix_fmt: str, tags: dict, seconds: float = 2.0, fps: int = 10,
                      size=(160, 96), fmt: str | None = None, x265_params: str = "") -> dict:
    """A video (plus AAC audio) whose stream carries ``tags`` (attribute -> FFmpeg enum value) in ``pix_fmt``;
    ``x265_params``: more libx265 parameters (``HDR10_STATIC``: the mastering display and light level SEI)."""
    path = Path(path)
    with av.open(str(path), "w", format=fmt) as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height = size
        vs.pix_fmt = pix_fmt
        cc = vs.codec_context
        for k, v in tags.items():
            setattr(cc, k, v)
        if codec == "libx265":
            vs.options = {"x265-params": ":".join(p for p in ("log-level=error", x265_params) if p)}
        write_audio = _audio(out, seconds)
        for i in range(int(seconds * fps)):
            img = frame_image(i, (180, 90, 30), size)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=pix_fmt)
            for k, v in tags.items():
                setattr(frame, k, v)
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        write_audio()
    return {"path": path, "tags": tags, "pix_fmt": pix_fmt}


def stream_tags(path) -> dict:
    """The first video stream's colour tags and pixel format as FFmpeg reads them."""
    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        return {"color_primaries": cc.color_primaries, "color_trc": cc.color_trc, "colorspace": cc.colorspace,
                "color_range": cc.color_range, "pix_fmt": cc.pix_fmt}
