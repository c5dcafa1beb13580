"""Probe a media file: duration, frame rate, size, audio layout (PyAV only).

Every user error (missing file, not media, empty, no video stream) is a
:class:`~avs_engine.errors.MediaError` whose one-line message starts with
the file name.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import av

from ..errors import MediaError


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` learns about a file without decoding it.

    ``duration_s`` is the video stream's duration (falling back to the
    container's); ``n_frames`` is the container's frame count when it stores
    one, else ``round(duration_s * fps)`` (an estimate). ``start_s`` is the
    video stream's first timestamp: time 0 of the video timeline that frame
    indices and audio samples are measured from.
    """

    path: str
    duration_s: float
    fps: float
    n_frames: int
    width: int
    height: int
    has_audio: bool
    audio_rate: int = 0
    audio_channels: int = 0
    start_s: float = 0.0


def check_file(path: str | os.PathLike) -> str:
    """Raise MediaError unless ``path`` is an existing, non-empty regular file; returns it as str."""
    p = str(path)
    if not os.path.exists(p):
        raise MediaError(f"{p}: file not found")
    if os.path.isdir(p):
        raise MediaError(f"{p}: is a directory, not a media file")
    if os.path.getsize(p) == 0:
        raise MediaError(f"{p}: empty file (0 bytes)")
    return p


def _one_line(e: BaseException) -> str:
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    # PyAV repeats the path in its messages ("...: '/x/y.mp4'"): drop it.
    msg = re.sub(r"^\[Errno -?\d+\]\s*", "", msg)
    return re.sub(r":\s*'[^']*'$", "", msg).strip()


def decode_checked(container, stream, path: str, kind: str) -> Iterator:
    """Decoded frames of ``stream``; a decode error becomes one MediaError line naming ``kind``."""
    it = container.decode(stream)
    while True:
        try:
            frame = next(it)
        except StopIteration:
            return
        except av.error.FFmpegError as e:
            raise MediaError(f"{path}: {kind} decode error ({_one_line(e)})") from None
        yield frame


@contextmanager
def open_media(path: str | os.PathLike) -> Iterator["av.container.InputContainer"]:
    """Open ``path`` for reading with PyAV; bad files raise a one-line MediaError."""
    p = check_file(path)
    try:
        container = av.open(p, mode="r")
    except av.error.FFmpegError as e:
        raise MediaError(f"{p}: not a readable media file ({_one_line(e)})") from None
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise MediaError(f"{p}: cannot open ({_one_line(e)})") from None
    try:
        yield container
    finally:
        container.close()


def video_stream(container, path: str):
    """The first video stream, or a MediaError naming the file."""
    if not container.streams:
        raise MediaError(f"{path}: no audio or video streams (empty or zero-length media)")
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
        raise MediaError(f"{path}: no video stream (streams found: {kinds})")
    return container.streams.video[0]


def stream_fps(stream) -> float:
    """Frames per second of a video stream: average rate, else guessed, else base rate."""
    for name in ("average_rate", "guessed_rate", "base_rate"):
        rate = getattr(stream, name, None)
        if rate is not None and rate > 0:
            f = float(rate)
            if 0 < f < 1000:  # a 1/time_base "rate" (e.g. 90000) is not a frame rate
                return f
    return 0.0


def _seconds(value, time_base) -> float | None:
    if value is None or time_base is None:
        return None
    return float(value * time_base)


def _tag_duration(stream) -> float | None:
    """Matroska/WebM write a per-stream ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``)."""
    meta = getattr(stream, "metadata", None) or {}
    for key, val in meta.items():
        if key.upper() == "DURATION":
            m = re.match(r"^(\d+):(\d+):(\d+(?:\.\d+)?)$", str(val).strip())
            if m:
                h, mnt, s = m.groups()
                return int(h) * 3600 + int(mnt) * 60 + float(s)
    return None


def _video_duration(container, vs) -> float:
    d = _seconds(vs.duration, vs.time_base)
    if d is not None and d > 0:
        return d
    d = _tag_duration(vs)
    if d is not None and d > 0:
        return d
    if container.duration is not None and container.duration > 0:
        d = container.duration / av.time_base
        # The container's duration counts from the earliest stream start.
        cstart = (container.start_time or 0) / av.time_base
        vstart = _seconds(vs.start_time, vs.time_base)
        if vstart is not None:
            d -= max(0.0, vstart - cstart)
        return max(d, 0.0)
    fps = stream_fps(vs)
    if vs.frames and fps > 0:
        return vs.frames / fps
    return 0.0


def probe(path: str | os.PathLike) -> MediaInfo:
    """Read the container header of ``path`` (no decoding) and return a :class:`MediaInfo`.

    Raises MediaError for a missing/empty/unreadable file, a file with no video
    stream, or a zero-length video. A missing audio track is *not* an error
    here (``has_audio=False``).
    """
    p = str(path)
    with open_media(p) as c:
        vs = video_stream(c, p)
        fps = stream_fps(vs)
        if fps <= 0:
            raise MediaError(f"{p}: cannot determine the video frame rate")
        duration = _video_duration(c, vs)
        n_frames = int(vs.frames or 0)
        if n_frames <= 0:
            n_frames = int(round(duration * fps))
        elif duration <= 0:
            duration = n_frames / fps
        if n_frames <= 0 or duration <= 0:
            raise MediaError(f"{p}: zero-length video (no frames)")
        cc = vs.codec_context
        width, height = int(cc.width or 0), int(cc.height or 0)
        if width <= 0 or height <= 0:
            raise MediaError(f"{p}: video stream has no frame size ({width}x{height})")
        start = _seconds(vs.start_time, vs.time_base) or 0.0
        aud = c.streams.audio[0] if c.streams.audio else None
        rate = int(aud.codec_context.sample_rate or 0) if aud is not None else 0
        chans = int(aud.codec_context.channels or 0) if aud is not None else 0
        return MediaInfo(
            path=p,
            duration_s=float(duration),
            fps=fps,
            n_frames=n_frames,
            width=width,
            height=height,
            has_audio=aud is not None,
            audio_rate=rate,
            audio_channels=chans,
            start_s=float(start),
        )


__all__ = ["MediaInfo", "probe", "open_media", "check_file", "video_stream", "stream_fps"]
