"""One frame per second, AVSBench's way, decoded in a single streaming pass.

Second ``l`` is represented by frame index ``int(l*fps + 15/16*fps)`` (the
frame 15/16 of the way through that second, as AVSBench sampled its clips).
A decoded frame's index is its presentation time on the video timeline,
``round((pts*time_base - start_s) * fps)``, not its position in decode
order, so variable-frame-rate or gappy streams map to the frame that is on
screen at the wanted time: the last frame whose index is <= the wanted index.
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator

import av
import numpy as np

from ..errors import MediaError
from .probe import MediaInfo, decode_checked, open_media, probe, video_stream


def frame_index(second: int, fps: float) -> int:
    """Index of the frame that represents ``second``: ``int(l*fps + 15/16*fps)``."""
    return int(second * fps + 15.0 / 16.0 * fps)


def n_seconds(info: MediaInfo) -> int:
    """How many seconds of ``info``'s video get a frame (and a prediction).

    The count of seconds ``l`` whose sampled frame exists,
    ``frame_index(l, fps) < n_frames``; so a 6.5 s video at 25 fps (frame 173
    would be needed for second 6, it has 162) has 6 seconds, a 5.0 s one 5.
    A video shorter than 15/16 s still has 1 second (its last frame stands
    in). Zero only when the video has no frames (``probe`` rejects those).
    """
    if info.n_frames <= 0 or info.fps <= 0:
        return 0
    # frame_index grows by ~fps per second: start from the estimate, then fix up.
    n = max(0, int(info.n_frames / info.fps))
    while n > 0 and frame_index(n - 1, info.fps) >= info.n_frames:
        n -= 1
    while frame_index(n, info.fps) < info.n_frames:
        n += 1
    return max(n, 1)


def to_rgb(frame: "av.VideoFrame") -> np.ndarray:
    """A decoded frame as RGB uint8 ``[H, W, 3]`` (a contiguous array of its own)."""
    return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))


class SecondSampler:
    """Push decoded video frames in presentation order; get ``(second, rgb)`` out.

    Holds at most the previous decoded frame (as an ``av.VideoFrame``) and the
    last converted RGB array. ``wanted`` are the seconds to sample (any order;
    yielded ascending). Frames whose pts is missing count on from the
    previous frame's index.
    """

    def __init__(self, wanted: Iterable[int], fps: float, start_s: float | None = 0.0):
        secs = sorted(set(int(s) for s in wanted))
        self.targets = [(s, frame_index(s, fps)) for s in secs]
        self.fps = float(fps)
        self.start_s = start_s  # None: the first frame's time is the origin
        self.pos = 0
        self._prev = None  # (index, av.VideoFrame)
        self._last_index = -1
        self._cache = None  # (id(frame), rgb) of the last conversion
        self.n_decoded = 0

    @property
    def done(self) -> bool:
        return self.pos >= len(self.targets)

    def _index_of(self, frame) -> int:
        t = frame.time if frame.pts is not None else None
        if t is None:
            return self._last_index + 1
        if self.start_s is None:
            self.start_s = float(t)
        return int(round((float(t) - self.start_s) * self.fps))

    def _rgb(self, frame) -> np.ndarray:
        if self._cache is None or self._cache[0] is not frame:
            self._cache = (frame, to_rgb(frame))
        return self._cache[1]

    def push(self, frame) -> list[tuple[int, np.ndarray]]:
        """Feed one decoded frame; returns the seconds it completes (maybe none)."""
        idx = self._index_of(frame)
        self._last_index = idx
        self.n_decoded += 1
        out = []
        while self.pos < len(self.targets) and self.targets[self.pos][1] <= idx:
            sec, want = self.targets[self.pos]
            use = frame if (idx == want or self._prev is None) else self._prev[1]
            out.append((sec, self._rgb(use)))
            self.pos += 1
        self._prev = (idx, frame)
        return out

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """End of stream: every second still wanted gets the last decoded frame."""
        if self.done:
            return []
        if self._prev is None:
            return []
        out = [(sec, self._rgb(self._prev[1])) for sec, _ in self.targets[self.pos:]]
        self.pos = len(self.targets)
        return out


def decode_video(container, path: str, stream=None) -> Iterator["av.VideoFrame"]:
    """Decoded frames of the first video stream; decode errors become MediaError."""
    vs = stream if stream is not None else video_stream(container, path)
    vs.thread_type = "AUTO"
    return decode_checked(container, vs, path, "video")


def iter_second_frames(
    path: str | os.PathLike,
    seconds: Iterable[int] | None = None,
    info: MediaInfo | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(second, rgb uint8 [H, W, 3])`` for each wanted second, ascending, in one decode pass.

    ``seconds`` defaults to ``range(n_seconds(info))``. Decoding stops after the
    last wanted frame. Memory: the decoder's own frames plus one previous
    frame. If the stream ends before a wanted index (the frame count was an
    estimate, or the stream is truncated), the last decoded frame is used for
    the remaining seconds.

    The file is probed (and bad input raises MediaError) when this is called,
    not at the first ``next()``.
    """
    p = str(path)
    info = info if info is not None else probe(p)
    wanted = list(range(n_seconds(info))) if seconds is None else list(seconds)
    if any(s < 0 for s in wanted):
        raise ValueError(f"negative second in {wanted}")
    return _iter_second_frames(p, wanted, info)


def _iter_second_frames(p: str, wanted: list[int], info: MediaInfo) -> Iterator[tuple[int, np.ndarray]]:
    if not wanted:
        return
    sampler = SecondSampler(wanted, info.fps, info.start_s)
    with open_media(p) as c:
        vs = video_stream(c, p)
        if vs.start_time is None:
            sampler.start_s = None
        for frame in decode_video(c, p, vs):
            yield from sampler.push(frame)
            if sampler.done:
                return
    if sampler.n_decoded == 0:
        raise MediaError(f"{p}: no decodable video frames")
    yield from sampler.finish()


__all__ = ["frame_index", "n_seconds", "iter_second_frames", "SecondSampler", "to_rgb", "decode_video"]
