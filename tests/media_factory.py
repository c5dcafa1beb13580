"""Small synthetic media files for tests, written with PyAV (no external tools).

``make_video`` writes a clip whose content is known exactly:

- video: second ``l`` is a solid colour ``colors[l]`` (a well-separated palette
  by default). A strip of ``N_BITS`` black/white blocks along the bottom edge
  (each ``BIT_W`` px wide, ``BIT_H`` px tall) encodes the frame index in binary,
  least significant bit on the left; :func:`read_frame_index` decodes it back
  from an RGB frame. A small white square in the top-left corner is a marker
  (only present so that frames are not perfectly flat).
- audio: in second ``l`` a sine of ``tones[l]`` Hz, amplitude 0.5, on every
  channel (or only on channel 0 with ``left_only=True``; the others silent).

The container follows the suffix: ``.mp4``/``.mov``/``.mkv`` get H.264 (yuv420p)
+ AAC; ``.avi`` gets MPEG-4 part 2 + PCM s16le; ``.webm`` VP9 + Opus.
Width and height must be even (libx264 with yuv420p).

The rest writes the awkward files users have: rotated phone videos, MJPEG
with repeated timestamps, raw H.264, 8-channel audio, an audio track without
packets, and byte-level damage (:func:`corrupt_copy`, :func:`truncated_copy`,
:func:`garbled_brand_copy`) of a generated file.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# Twelve well-separated RGB colours (pairwise distance >= ~150 in RGB).
PALETTE: list[tuple[int, int, int]] = [
    (220, 30, 30),    # red
    (30, 200, 40),    # green
    (30, 60, 220),    # blue
    (230, 220, 40),   # yellow
    (200, 40, 210),   # magenta
    (40, 210, 220),   # cyan
    (240, 140, 20),   # orange
    (120, 40, 160),   # purple
    (128, 128, 128),  # grey
    (20, 110, 90),    # teal
    (250, 170, 200),  # pink
    (110, 70, 20),    # brown
]

N_BITS = 12   # frame index bits in the bottom strip
BIT_W = 12    # px per bit block
BIT_H = 12    # strip height in px
MARKER = 6    # side of the white square in the top-left corner

_CODECS = {
    ".mp4": ("libx264", "aac"),
    ".mov": ("libx264", "aac"),
    ".mkv": ("libx264", "aac"),
    ".avi": ("mpeg4", "pcm_s16le"),
    ".webm": ("libvpx-vp9", "libopus"),
}


def default_colors(n: int) -> list[tuple[int, int, int]]:
    return [PALETTE[i % len(PALETTE)] for i in range(n)]


def default_tones(n: int) -> list[float]:
    return [300.0 + 100.0 * i for i in range(n)]


def _fps_fraction(fps: float | Fraction) -> Fraction:
    if isinstance(fps, Fraction):
        return fps
    if abs(fps - 29.97) < 1e-6:
        return Fraction(30000, 1001)
    if abs(fps - 59.94) < 1e-6:
        return Fraction(60000, 1001)
    if abs(fps - 23.976) < 1e-6:
        return Fraction(24000, 1001)
    return Fraction(fps).limit_denominator(1001)


def frame_image(index: int, color, size) -> np.ndarray:
    """The RGB uint8 [H, W, 3] image written for frame ``index``."""
    w, h = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = np.asarray(color, np.uint8)
    img[:MARKER, :MARKER] = 255
    for b in range(N_BITS):
        x0 = b * BIT_W
        if x0 + BIT_W > w:
            break
        img[h - BIT_H:, x0:x0 + BIT_W] = 255 if (index >> b) & 1 else 0
    return img


def read_frame_index(rgb: np.ndarray) -> int:
    """Decode the frame index from the bottom strip of an RGB frame [H, W, 3]."""
    h, w = rgb.shape[:2]
    idx = 0
    for b in range(N_BITS):
        x0 = b * BIT_W
        if x0 + BIT_W > w:
            break
        block = rgb[h - BIT_H + 3:h - 3, x0 + 3:x0 + BIT_W - 3].astype(np.float64)
        if block.mean() > 127:
            idx |= 1 << b
    return idx


def center_color(rgb: np.ndarray) -> np.ndarray:
    """Mean RGB of the frame centre (away from the marker and the bit strip)."""
    h, w = rgb.shape[:2]
    return rgb[h // 4: h // 2, w // 4: 3 * w // 4].reshape(-1, 3).mean(0)


def make_video(
    path,
    seconds: float = 6.5,
    fps: float | Fraction = 25,
    size: tuple[int, int] = (160, 96),
    audio: bool = True,
    sample_rate: int = 44100,
    channels: int = 2,
    colors=None,
    tone_hz=None,
    left_only: bool = False,
    amplitude: float = 0.5,
    video: bool = True,
    drop_frames=(),
    audio_delay_s: float = 0.0,
    audio_seconds: float | None = None,
    video_codec: str | None = None,
    audio_codec: str | None = None,
    rotate_cw: int = 0,
    rotate_as_tag: bool = False,
    repeat_pts=(),
    faststart: bool = False,
) -> dict:
    """Write a synthetic clip; returns {"colors", "tones", "fps", "seconds", "n_frames", "path"}.

    ``size`` is (width, height). ``channels`` 1, 2, 6 (5.1) or 8 (7.1). ``video=False``
    writes an audio-only file (for error tests). ``drop_frames``: frame indices
    not written (their timestamps are missing from the stream, as in a
    variable-frame-rate file). ``audio_delay_s``: the audio stream starts that
    late (its first timestamp), the tones shifted with it. ``audio_seconds``:
    length of the audio track when it differs from the video's.
    ``video_codec`` / ``audio_codec`` replace the suffix's codecs (``"mjpeg"``,
    ``"pcm_s16le"``, ``"pcm_s24le"``...). ``rotate_cw``: the stored frames are
    shown turned clockwise by that many degrees, as a display matrix or, with
    ``rotate_as_tag``, as a ``rotate`` metadata tag (Matroska keeps it).
    ``repeat_pts``: frame indices muxed with the previous frame's timestamp.
    ``faststart``: MP4 index before the media data (as streamed files are).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    vcodec, acodec = _CODECS.get(suffix, _CODECS[".mp4"])
    vcodec, acodec = video_codec or vcodec, audio_codec or acodec
    n_sec = int(np.ceil(seconds))
    colors = list(colors) if colors is not None else default_colors(n_sec)
    tones = list(tone_hz) if tone_hz is not None else default_tones(n_sec)
    if len(colors) < n_sec:
        colors = colors + default_colors(n_sec)[len(colors):]
    if len(tones) < n_sec:
        tones = tones + default_tones(n_sec)[len(tones):]
    rate = _fps_fraction(fps)
    n_frames = int(round(seconds * rate))
    layout = {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}[channels]
    options = {"movflags": "+faststart"} if faststart else {}

    with av.open(str(path), "w", options=options) as out:
        vs = None
        if video:
            vs = out.add_stream(vcodec, rate=rate)
            vs.width, vs.height = size
            vs.pix_fmt = "yuvj420p" if vcodec == "mjpeg" else "yuv420p"
            if rotate_cw and rotate_as_tag:
                vs.metadata["rotate"] = str(rotate_cw)
            elif rotate_cw:
                vs.set_display_rotation(-rotate_cw)   # PyAV counts counter-clockwise
            if vcodec == "libx264":
                # B-frames on, so that decode order != presentation order as in real files.
                vs.options = {"crf": "18", "preset": "ultrafast", "x264-params": "bframes=2"}
            elif vcodec == "mpeg4":
                vs.options = {"qscale": "3"}
                vs.codec_context.qmin = 1
                vs.codec_context.qmax = 4
            elif vcodec == "libvpx-vp9":
                vs.options = {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"}
            elif vcodec == "mjpeg":
                vs.codec_context.qmin = vs.codec_context.qmax = 2
        as_ = None
        if audio:
            as_ = out.add_stream(acodec, rate=sample_rate, layout=layout)
            if acodec == "libopus":
                as_.rate = 48000
                sample_rate = 48000
            as_.time_base = Fraction(1, sample_rate)

        # Audio signal (phase-continuous tone: integrate the instantaneous frequency).
        if as_ is not None:
            n_samples = int(round((seconds if audio_seconds is None else audio_seconds) * sample_rate))
            sec_of = np.minimum(np.arange(n_samples) // sample_rate, n_sec - 1)
            freq = np.asarray(tones, np.float64)[sec_of]
            phase = 2 * np.pi * (np.cumsum(freq) - freq) / sample_rate  # phase 0 at t = 0
            sig = (amplitude * np.sin(phase)).astype(np.float32)
            ctx = as_.codec_context
            fmt = ctx.format.name if ctx.format is not None else "fltp"
            if channels > 6:
                # PyAV 18 mishandles 8-channel planar frames (it counts 9
                # planes); hand the encoder packed samples instead.
                fmt = {"fltp": "flt", "s16p": "s16", "s32p": "s32"}.get(fmt, fmt)
            chunk = ctx.frame_size or 1024
        else:
            n_samples = 0
        audio_tb = Fraction(1, sample_rate)
        delay = int(round(audio_delay_s * sample_rate))
        pos = 0

        def encode_audio_until(t_end: float) -> None:
            nonlocal pos
            while pos < n_samples and (pos + delay) / sample_rate <= t_end:
                part = sig[pos:pos + chunk]
                planes = np.zeros((channels, len(part)), np.float32)
                if left_only:
                    planes[0] = part
                else:
                    planes[:] = part
                if fmt == "s16":
                    data = (np.clip(planes.T, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
                elif fmt == "flt":
                    data = planes.T.reshape(1, -1).copy()
                elif fmt == "fltp":
                    data = planes
                elif fmt == "s16p":
                    data = (np.clip(planes, -1, 1) * 32767).astype(np.int16)
                elif fmt == "s32":
                    data = (np.clip(planes.T, -1, 1) * 2147483392).astype(np.int32).reshape(1, -1)
                else:
                    raise ValueError(f"audio sample format {fmt} not handled")
                af = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
                af.sample_rate = sample_rate
                af.pts = pos + delay
                af.time_base = audio_tb
                for pkt in as_.encode(af):
                    out.mux(pkt)
                pos += len(part)

        # Interleave: before each video frame, the audio up to its time.
        if vs is not None:
            drop, repeat = set(drop_frames), set(repeat_pts)
            last_pts = None

            def mux_video(packets) -> None:
                nonlocal last_pts
                for pkt in packets:
                    # Encoders refuse repeated timestamps; Matroska takes them.
                    if pkt.pts in repeat and last_pts is not None:
                        pkt.pts = pkt.dts = last_pts
                    last_pts = pkt.pts
                    out.mux(pkt)

            for i in range(n_frames):
                encode_audio_until(float(i / rate))
                if i in drop:
                    continue
                sec = min(int(i / rate), n_sec - 1)
                img = frame_image(i, colors[sec], size)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts = i
                frame.time_base = Fraction(1) / rate
                mux_video(vs.encode(frame))
            mux_video(vs.encode())
        if as_ is not None:
            encode_audio_until(float("inf"))
            for pkt in as_.encode():
                out.mux(pkt)

    return {
        "path": str(path),
        "colors": colors[:n_sec],
        "tones": tones[:n_sec],
        "fps": float(rate),
        "seconds": seconds,
        "n_frames": n_frames,
        "sample_rate": sample_rate,
    }


def make_silent_video(path, seconds: float = 6.5, fps: float | Fraction = 25,
                      size: tuple[int, int] = (160, 96), colors=None) -> dict:
    """A clip with a video stream only (no audio track)."""
    return make_video(path, seconds=seconds, fps=fps, size=size, audio=False, colors=colors)


def make_audio_only(path, seconds: float = 3.0, sample_rate: int = 44100, channels: int = 2) -> dict:
    """A media file with an audio stream and no video stream (``.m4a``/``.mp4``)."""
    return make_video(path, seconds=seconds, video=False, sample_rate=sample_rate, channels=channels)


def make_garbage_file(path, n_bytes: int = 4096, seed: int = 0) -> str:
    """Random bytes under a media name (e.g. ``x.mp4``): not decodable."""
    rng = np.random.default_rng(seed)
    Path(path).write_bytes(rng.integers(0, 256, n_bytes, dtype=np.uint8).tobytes())
    return str(path)


def make_empty_file(path) -> str:
    """A zero-byte file."""
    Path(path).write_bytes(b"")
    return str(path)


def make_zero_length_video(path, size: tuple[int, int] = (160, 96)) -> str:
    """A valid container with a video and an audio stream but no frames/samples."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=25)
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        out.add_stream("aac", rate=44100, layout="stereo")
        out.start_encoding()  # write the header although no packet follows
    return str(path)


def make_raw_h264(path, seconds: float = 4.0, fps: int = 25, size: tuple[int, int] = (160, 96)) -> dict:
    """An Annex B H.264 elementary stream (``.h264``): no container, no duration, no audio."""
    n_frames = int(round(seconds * fps))
    colors = default_colors(int(np.ceil(seconds)))
    with av.open(str(path), "w", format="h264") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        vs.options = {"crf": "18", "preset": "ultrafast", "x264-params": "bframes=2"}
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(frame_image(i, colors[int(i / fps)], size), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
    return {"path": str(path), "colors": colors, "fps": float(fps), "seconds": seconds, "n_frames": n_frames}


def make_empty_audio_track(path, seconds: float = 3.0, fps: int = 25, size: tuple[int, int] = (160, 96)) -> dict:
    """Video frames plus an audio track that never receives a packet."""
    n_frames = int(round(seconds * fps))
    colors = default_colors(int(np.ceil(seconds)))
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height = size
        vs.pix_fmt = "yuv420p"
        vs.options = {"preset": "ultrafast"}
        acodec = "pcm_s16le" if Path(path).suffix.lower() in (".mkv", ".avi") else "aac"
        out.add_stream(acodec, rate=44100, layout="stereo")
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(frame_image(i, colors[int(i / fps)], size), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for pkt in vs.encode(frame):
                out.mux(pkt)
        for pkt in vs.encode():
            out.mux(pkt)
    return {"path": str(path), "colors": colors, "fps": float(fps), "seconds": seconds, "n_frames": n_frames}


def _mdat_span(data: bytes) -> tuple[int, int]:
    """Byte range of an MP4's media data (the ``mdat`` box payload); the whole file otherwise."""
    pos = 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        head = 8
        if size == 1:
            size, head = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif size == 0:
            size = len(data) - pos
        if kind == b"mdat":
            return pos + head, min(pos + size, len(data))
        if size < 8:
            break
        pos += size
    return 0, len(data)


def corrupt_copy(src, dst, at=(0.35, 0.6), n_bytes: int = 400, seed: int = 0) -> str:
    """Copy ``src`` with ``n_bytes`` random bytes written at each fraction ``at`` of its media data."""
    data = bytearray(Path(src).read_bytes())
    a, b = _mdat_span(bytes(data))
    rng = np.random.default_rng(seed)
    for f in at:
        p = a + int(f * (b - a))
        data[p:p + n_bytes] = rng.integers(0, 256, n_bytes, dtype=np.uint8).tobytes()
    Path(dst).write_bytes(bytes(data))
    return str(dst)


def truncated_copy(src, dst, fraction: float) -> str:
    """The first ``fraction`` of ``src``'s bytes (an interrupted download or copy)."""
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * fraction)])
    return str(dst)


def garbled_brand_copy(src, dst) -> str:
    """Copy an MP4 with byte 0x96 in its major brand (not UTF-8 in the header's metadata)."""
    data = bytearray(Path(src).read_bytes())
    assert data[4:8] == b"ftyp", "not an MP4 with a leading ftyp box"
    data[10] = 0x96   # third character of the major brand
    Path(dst).write_bytes(bytes(data))
    return str(dst)


if __name__ == "__main__":  # quick timing check
    import sys
    import tempfile
    import time

    d = tempfile.mkdtemp()
    for suf in (".mp4", ".mkv", ".avi", ".mov", ".webm"):
        t0 = time.perf_counter()
        p = os.path.join(d, "v" + suf)
        make_video(p)
        print(suf, f"{time.perf_counter() - t0:.3f}s", os.path.getsize(p), file=sys.stderr)
