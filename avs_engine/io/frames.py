"""One frame per second, AVSBench's way, decoded in a single streaming pass.

Second ``l`` is represented by frame index ``int(l*fps + 15/16*fps)`` (the
frame 15/16 of the way through that second, as AVSBench sampled its clips).
A decoded frame's index is its presentation time on the video timeline,
``round((pts*time_base - start_s) * fps)``, not its position in decode
order, so variable-frame-rate or gappy streams map to the frame that is on
screen at the wanted time: the last frame whose index is <= the wanted index.

Frames come out as displayed (turned by the file's rotation, see
``probe.orient``). Memory: besides the decoder's own reference frames, one
full-resolution RGB frame exists at a time while it is converted; frames
larger than 4K are decoded with slice threads only, since frame threading
keeps one extra full frame per thread in flight.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable, Iterator

import av
import numpy as np

from ..errors import MediaError
from .probe import MediaInfo, decode_checked, frame_time, open_media, orient, probe, video_stream

# Above this many pixels per frame, frame-threaded decoding (one frame in
# flight per thread) costs more memory than it saves time.
FRAME_THREADS_MAX_PIXELS = 3840 * 2160


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


def to_rgb(frame: "av.VideoFrame", rotation: int = 0, mirror: bool = False) -> np.ndarray:
    """A decoded frame as displayed, RGB uint8 ``[H, W, 3]`` (a contiguous array of its own).

    ``H, W`` are the stored size, swapped when ``rotation`` is 90 or 270.
    """
    rgb = frame.to_ndarray(format="rgb24")   # [h, w, 3], a view of a converted frame when unpadded
    if rotation or mirror:
        rgb = orient(rgb, rotation, mirror)
    return np.ascontiguousarray(rgb)


class SecondSampler:
    """Push decoded video frames in presentation order; get ``(second, rgb)`` out.

    Holds at most the previous decoded frame (as an ``av.VideoFrame``); a
    converted RGB array is kept only while one call hands it out for several
    seconds. ``wanted`` are the seconds to sample (any order;
    yielded ascending). Frames whose pts is missing count on from the
    previous frame's index. ``rotation``/``mirror``: the display orientation
    (see ``probe.orient``). ``transform``: applied to each converted RGB frame
    before it is handed out (e.g. a resize), so that only one full-resolution
    RGB array exists at a time.
    """

    def __init__(self, wanted: Iterable[int], fps: float, start_s: float | None = 0.0,
                 rotation: int = 0, mirror: bool = False, transform: Callable[[np.ndarray], np.ndarray] | None = None):
        secs = sorted(set(int(s) for s in wanted))
        self.targets = [(s, frame_index(s, fps)) for s in secs]
        self.fps = float(fps)
        self.start_s = start_s  # None: the first frame's time is the origin
        self.pos = 0
        self._prev = None  # (index, av.VideoFrame, push number)
        self._last_index = -1
        # (push number, rgb) of the conversion in this call; not the frame, whose buffer it would keep
        self._cache = None
        self.n_decoded = 0
        self.rotation, self.mirror, self.transform = rotation, mirror, transform

    @property
    def done(self) -> bool:
        return self.pos >= len(self.targets)

    def _index_of(self, frame) -> int:
        t = frame_time(frame)
        if t is None:
            return self._last_index + 1
        if self.start_s is None:
            self.start_s = float(t)
        return int(round((float(t) - self.start_s) * self.fps))

    def _rgb(self, frame, number: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != number:
            self._cache = None   # free the previous array before converting the next
            rgb = to_rgb(frame, self.rotation, self.mirror)
            if self.transform is not None:
                rgb = self.transform(rgb)
            self._cache = (number, rgb)
        return self._cache[1]

    def push(self, frame) -> list[tuple[int, np.ndarray]]:
        """Feed one decoded frame; returns the seconds it completes (maybe none)."""
        idx = self._index_of(frame)
        self._last_index = idx
        self.n_decoded += 1
        self._cache = None   # reused only within one call: do not keep a full frame between calls
        out = []
        while self.pos < len(self.targets) and self.targets[self.pos][1] <= idx:
            sec, want = self.targets[self.pos]
            if idx == want or self._prev is None:
                out.append((sec, self._rgb(frame, self.n_decoded)))
            else:
                out.append((sec, self._rgb(self._prev[1], self._prev[2])))
            self.pos += 1
        self._prev = (idx, frame, self.n_decoded)
        return out

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """End of stream: every second still wanted gets the last decoded frame."""
        if self.done:
            return []
        if self._prev is None:
            return []
        out = [(sec, self._rgb(self._prev[1], self._prev[2])) for sec, _ in self.targets[self.pos:]]
        self.pos = len(self.targets)
        return out


def decode_video(container, path: str, stream=None, info: MediaInfo | None = None) -> Iterator["av.VideoFrame"]:
    """Decoded frames of the first video stream, damaged packets skipped (see ``probe.decode_checked``)."""
    vs = stream if stream is not None else video_stream(container, path)
    set_decoder_threads(vs)
    return decode_checked(container, vs, path, "video", info)


def set_decoder_threads(vs) -> None:
    """Frame threads for frames up to 4K; slice threads only above (bounded memory)."""
    cc = vs.codec_context
    if (cc.width or 0) * (cc.height or 0) > FRAME_THREADS_MAX_PIXELS:
        vs.thread_type = "SLICE"
    else:
        vs.thread_type = "AUTO"


def iter_second_frames(
    path: str | os.PathLike,
    seconds: Iterable[int] | None = None,
    info: MediaInfo | None = None,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(second, rgb uint8 [H, W, 3])`` for each wanted second, ascending, in one decode pass.

    ``H, W`` are the displayed size (``info.height, info.width``): frames are
    turned as the file asks. ``transform``, if given, maps each frame first
    (e.g. a resize to the model's input; its output is what is yielded).

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
    return _iter_second_frames(p, wanted, info, transform)


def _iter_second_frames(p: str, wanted: list[int], info: MediaInfo,
                        transform: Callable[[np.ndarray], np.ndarray] | None = None,
                        ) -> Iterator[tuple[int, np.ndarray]]:
    if not wanted:
        return
    sampler = SecondSampler(wanted, info.fps, info.start_s, info.rotation, info.mirror, transform)
    with open_media(p) as c:
        vs = video_stream(c, p)
        if vs.start_time is None:
            sampler.start_s = None
        frames = decode_video(c, p, vs, info)
        try:
            for frame in frames:
                yield from sampler.push(frame)
                if sampler.done:
                    return
        finally:
            frames.close()
    if sampler.n_decoded == 0:
        why = " (the file is truncated)" if info.truncated else ""
        raise MediaError(f"{p}: no decodable video frames{why}")
    yield from sampler.finish()


__all__ = ["frame_index", "n_seconds", "iter_second_frames", "SecondSampler", "to_rgb", "decode_video",
           "set_decoder_threads", "FRAME_THREADS_MAX_PIXELS"]
