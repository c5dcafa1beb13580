"""Cut a video into model clips of T seconds, streaming (docs/runtime.md, "Clip windows").

Windows have T seconds and stride T; the last window is aligned to the
video's end, overlapping the one before, so that every second is predicted
from a full T-second window exactly once (a second covered twice keeps the
earlier window's prediction: :attr:`Window.new_seconds` says which seconds a
window contributes). A video shorter than T seconds runs as one window of its
own length (``WindowPlan.shortened``; the caller warns).

:func:`iter_clips` decodes the file once: the video stream and the audio
stream are each decoded by their own demuxer (the file is opened twice and
read in step), so memory is bounded by one window of sampled frames plus one
window of 16 kHz audio whatever the file's interleaving, not by its length.
Each sampled frame is written straight into its window's array (no second
copy of the window), and with ``frame_size`` it is resized as soon as it is
converted, so a window of 8K frames costs T small frames, not T full ones.

Audio per window: :func:`logmel.window_examples`, the trained back-to-back
0.96 s examples for T <= 5 and one example per second (``[l, l + 0.975)`` s
of second ``l``) for longer windows, where back-to-back examples drift away
from their frames. A truncated file (``MediaInfo.truncated``) whose audio
stops a little before its last predicted second gets silence for the rest,
noted in ``MediaInfo.decode_notes``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from ..errors import MediaError, NoAudioError
from .audio import SAMPLE_RATE, _iter_audio, no_audio_message
from .frames import _iter_second_frames, n_seconds as _n_seconds
from .logmel import silent_examples, window_examples
from .preprocess import cv2_resize_bilinear
from .probe import MediaInfo, probe


@dataclass(frozen=True)
class Window:
    """Seconds ``[start, start + length)`` of a video, run as one clip.

    ``new_seconds``: the seconds whose prediction this window provides (all of
    them, except the ones an overlapping last window shares with the previous
    window). ``shortened``: the video is shorter than the requested T and
    ``length`` was reduced to the video's length.
    """

    start: int
    length: int
    new_seconds: tuple[int, ...]
    shortened: bool = False

    @property
    def end(self) -> int:
        return self.start + self.length

    @property
    def seconds(self) -> range:
        return range(self.start, self.end)

    @property
    def new_slice(self) -> slice:
        """Positions of ``new_seconds`` inside the window (``clip.frames[w.new_slice]``)."""
        if not self.new_seconds:
            return slice(0, 0)
        return slice(self.new_seconds[0] - self.start, self.new_seconds[-1] - self.start + 1)


class WindowPlan(list):
    """The list of :class:`Window` for one video, plus what was decided.

    ``T``: the window length used; ``requested_T``: the one asked for;
    ``shortened``: ``T < requested_T`` because the video is shorter.
    """

    def __init__(self, windows, n_seconds: int, T: int, requested_T: int):
        super().__init__(windows)
        self.n_seconds = n_seconds
        self.T = T
        self.requested_T = requested_T

    @property
    def shortened(self) -> bool:
        return self.T < self.requested_T


def plan_windows(n_seconds: int, T: int) -> WindowPlan:
    """Windows covering seconds ``0 .. n_seconds-1``, each second predicted once.

    Starts at ``0, T, 2T, ...`` while a full window fits; if seconds remain,
    one last window starts at ``n_seconds - T`` (overlapping) and contributes
    only the remaining seconds. ``n_seconds < T`` gives one window of length
    ``n_seconds`` (``plan.shortened``). Examples: (12, 5) -> starts 0, 5, 7
    (the last contributes 10, 11); (5, 5) -> 0; (3, 5) -> one window of 3.
    """
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    if n_seconds < 1:
        raise ValueError(f"a video needs at least 1 second to plan windows, got {n_seconds}")
    requested = T
    shortened = n_seconds < T
    if shortened:
        T = n_seconds
    windows = []
    start = 0
    while start + T <= n_seconds:
        windows.append(Window(start, T, tuple(range(start, start + T)), shortened))
        start += T
    if start < n_seconds:  # leftover seconds: a window aligned to the end
        windows.append(Window(n_seconds - T, T, tuple(range(start, n_seconds)), shortened))
    return WindowPlan(windows, n_seconds, T, requested)


@dataclass
class Clip:
    """One window's model inputs.

    ``frames``: RGB uint8 ``[T, H, W, 3]`` (second ``window.start + t`` at
    ``t``), at the displayed size (``info.height, info.width``; turned as the
    file asks) or at ``frame_size`` when :func:`iter_clips` was given one.
    ``log_mel``: float32 ``[T, 1, 96, 64]``, the VGGish examples of the
    window's audio ``[start, start + T)`` s (see ``logmel.window_examples``;
    audio that ends early repeats its last example). ``silent``:
    the file has no audio track and ``log_mel`` is that of silence.
    """

    window: Window
    frames: np.ndarray
    log_mel: np.ndarray
    silent: bool
    index: int = 0  # window number in the plan
    plan: WindowPlan | None = field(default=None, repr=False)
    info: MediaInfo | None = field(default=None, repr=False)


class _AudioBuffer:
    """The 16 kHz mono track from ``chunks``, kept from ``base`` on (absolute sample index)."""

    def __init__(self, chunks: Iterator[np.ndarray]):
        self._it = chunks
        self._parts: list[np.ndarray] = []
        self.base = 0  # absolute index of the first kept sample
        self.end = 0  # absolute index one past the last sample read
        self.ended = False

    def fill(self, upto: int) -> None:
        while self.end < upto and not self.ended:
            try:
                chunk = next(self._it)
            except StopIteration:
                self.ended = True
                break
            self._parts.append(chunk)
            self.end += chunk.size

    def get(self, a: int, b: int) -> np.ndarray:
        """Samples ``[a, b)`` as far as the track goes (shorter at its end)."""
        self.fill(b)
        if a < self.base:
            raise AssertionError(f"audio before {self.base} already dropped (asked {a})")
        buf = np.concatenate(self._parts) if self._parts else np.zeros(0, np.float32)
        self._parts = [buf] if buf.size else []
        return buf[a - self.base: max(a - self.base, b - self.base)].copy()

    def drop_before(self, a: int) -> None:
        if a <= self.base:
            return
        buf = np.concatenate(self._parts) if self._parts else np.zeros(0, np.float32)
        k = min(a - self.base, buf.size)
        rest = buf[k:]
        self._parts = [rest] if rest.size else []
        self.base += k
        if self.base < a:  # past what was read: skip the rest as it arrives
            self._skip_to(a)

    def _skip_to(self, a: int) -> None:
        while self.base < a and not self.ended:
            try:
                chunk = next(self._it)
            except StopIteration:
                self.ended = True
                break
            self.end += chunk.size
            k = min(a - self.base, chunk.size)
            self.base += k
            if k < chunk.size:
                self._parts = [chunk[k:]]

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()


def iter_clips(
    path: str | os.PathLike,
    T: int = 5,
    allow_silent: bool = False,
    info: MediaInfo | None = None,
    frame_size: tuple[int, int] | None = None,
    frame_transform: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Iterator[Clip]:
    """Yield the :class:`Clip` of every window of :func:`plan_windows` for ``path``, in order.

    Bad input raises when this is called (not at the first ``next()``):
    MediaError for a missing / empty / unreadable file, no video stream or a
    zero-length video; NoAudioError when there is no audio track (or one
    without packets), unless ``allow_silent`` (then every clip gets silence,
    ``silent=True``). The plan is available as ``clip.plan`` (check
    ``clip.plan.shortened`` to warn). Damaged packets are skipped; what was
    skipped is appended to ``info.decode_notes`` while the clips are decoded
    (read it after the last clip).

    ``frame_size``: ``(width, height)`` to squash each sampled frame to with
    OpenCV's bilinear resize (``preprocess.cv2_resize_bilinear``) right after
    decoding; ``(224, 224)`` is exactly the first step of
    ``prepare_frames(mode="avsbench")``, which then leaves it unchanged. None
    keeps the displayed size. ``frame_transform``: any other per-frame map
    ``uint8 [H, W, 3] -> uint8 [h, w, 3]`` (same output size for every frame),
    applied instead of ``frame_size`` as each frame is decoded; e.g. the
    runtime's squash for ``resize="direct"``.
    """
    p = str(path)
    info = info if info is not None else probe(p)
    if not info.has_audio and not allow_silent:
        raise NoAudioError(no_audio_message(p))
    n = _n_seconds(info)
    if n < 1:
        raise MediaError(f"{p}: zero-length video (no frames)")
    plan = plan_windows(n, T)
    if frame_transform is not None and frame_size is not None:
        raise ValueError("give frame_size or frame_transform, not both")
    if frame_size is not None:
        fw, fh = (int(v) for v in frame_size)
        if fw < 1 or fh < 1:
            raise ValueError(f"frame_size must be positive (width, height), got {frame_size}")
        frame_transform = lambda rgb: cv2_resize_bilinear(rgb, (fw, fh))  # noqa: E731
    return _iter_clips(p, plan, info, frame_transform)


def _iter_clips(p: str, plan: WindowPlan, info: MediaInfo,
                transform: Callable[[np.ndarray], np.ndarray] | None = None) -> Iterator[Clip]:
    frames_it = _iter_second_frames(p, list(range(plan.n_seconds)), info, transform)
    audio = _AudioBuffer(_iter_audio(p, info)) if info.has_audio else None
    pad_end = None  # truncated file: audio missing before this sample is silence
    if audio is not None and info.truncated and info.audio_end_s is not None:
        pad_end = int(round(info.duration_s * SAMPLE_RATE))
    held: dict[int, np.ndarray] = {}  # sampled frames the next window shares with this one
    try:
        for i, w in enumerate(plan):
            next_start = plan[i + 1].start if i + 1 < len(plan) else plan.n_seconds
            frames = None
            for t, s in enumerate(w.seconds):
                rgb = held.pop(s, None)
                if rgb is None:
                    try:
                        sec, rgb = next(frames_it)
                    except StopIteration:
                        raise MediaError(f"{p}: video ended before second {w.end - 1}") from None
                    assert sec == s, (sec, s)
                if frames is None:
                    frames = np.empty((w.length, *rgb.shape), rgb.dtype)
                frames[t] = rgb
                if s >= next_start:
                    held[s] = frames[t]
                del rgb
            if audio is not None:
                a0, a1 = w.start * SAMPLE_RATE, w.end * SAMPLE_RATE
                samples = audio.get(a0, a1)
                if pad_end is not None and samples.size < min(a1, pad_end) - a0:
                    missing = min(a1, pad_end) - a0 - samples.size
                    if missing >= SAMPLE_RATE // 100:
                        info.note(f"audio of the last {missing / SAMPLE_RATE:.2f} s is missing (file is truncated): "
                                  "used silence")
                    samples = np.concatenate([samples, np.zeros(missing, np.float32)])
                log_mel = window_examples(samples, w.length)
            else:
                log_mel = silent_examples(w.length)
            if audio is not None:
                audio.drop_before(next_start * SAMPLE_RATE)
            yield Clip(w, frames, log_mel, silent=audio is None, index=i, plan=plan, info=info)
            held = {s: f.copy() for s, f in held.items()}   # the caller may reuse the yielded array
    finally:
        frames_it.close()
        if audio is not None:
            audio.close()


__all__ = ["Window", "WindowPlan", "Clip", "plan_windows", "iter_clips"]
