"""The clip source: a video file -> the small inputs of each clip window (decode, sample, squash, log-mel).

The first of the pipeline's three pieces, usable on its own (the scale-out
jobs run it in CPU tasks): what it ships is small, uint8 frames already
squashed to 224x224 (or to the encoder size with ``resize="direct"``) and
the log-mel examples, never float 1024x1024 tensors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import MediaError, NoAudioError
from ..io.clips import Window, iter_clips, plan_windows
from ..io.frames import n_seconds
from ..io.preprocess import MODES, squash_frame
from ..io.probe import probe
from .results import VideoResult


@dataclass
class ClipInput:
    """One clip window, ready for the model step.

    ``frames``: uint8 ``[T, s, s, 3]`` RGB, squashed (s = 224, or the encoder
    size with ``resize="direct"``); ``log_mel``: float32 ``[T, 1, 96, 64]``;
    ``window``: which seconds these are and which of them are new;
    ``timings``: seconds this clip spent in the source, per step.
    """

    window: Window
    frames: np.ndarray
    log_mel: np.ndarray
    silent: bool = False
    index: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def T(self) -> int:
        return int(self.frames.shape[0])

    @property
    def window_row(self) -> list[int]:
        """The window as ``[start, length, first new second, last new + 1]`` (to ship between tasks)."""
        w = self.window
        return [w.start, w.length, w.new_seconds[0] if w.new_seconds else 0, w.new_seconds[-1] + 1 if w.new_seconds else 0]


class ClipSource:
    """Probes a video, plans its clip windows and yields each window's :class:`ClipInput`.

    ``img_size``: the encoder's input side S (``resize="direct"`` squashes
    straight to it). ``clip_seconds``: T, the window length (5, as in training).
    ``allow_silent``: run a video without an audio track on silence.
    """

    def __init__(self, img_size: int, clip_seconds: int = 5, resize: str = "avsbench", allow_silent: bool = False) -> None:
        if resize not in MODES:
            raise ValueError(f"resize must be one of {MODES}, got {resize!r}")
        if int(clip_seconds) < 1:
            raise ValueError(f"clip_seconds must be >= 1, got {clip_seconds}")
        self.img_size = int(img_size)
        self.clip_seconds = int(clip_seconds)
        self.resize = resize
        self.allow_silent = allow_silent

    def open(self, path: str | Path) -> VideoResult:
        """Probe ``path`` (one-line MediaError/NoAudioError for bad input) and plan its windows."""
        info = probe(str(path))
        if not info.has_audio and not self.allow_silent:
            raise NoAudioError(f"{path}: no audio track (use --allow-silent to run with silence)")
        n = n_seconds(info)
        if n < 1:
            raise MediaError(f"{path}: zero-length video (no frames)")
        windows = plan_windows(n, self.clip_seconds)
        result = VideoResult(
            path=str(path), width=info.width, height=info.height, fps=float(info.fps),
            duration_s=float(info.duration_s), clip_seconds=windows.T, n_seconds=n, info=info, windows=list(windows),
        )
        if windows.shortened:
            result.warn(f"video is {n} s long, shorter than the {self.clip_seconds} s window: ran with T = {windows.T}")
        if not info.has_audio:
            result.silent = True
            result.warn("no audio track: ran with silence (--allow-silent)")
        return result

    def clips(self, result: VideoResult) -> Iterator[ClipInput]:
        """Each window's :class:`ClipInput`, in order; the file is decoded once, streaming.

        Each sampled frame is squashed as soon as it is decoded, so no more than
        one full-resolution frame is alive at a time, whatever the video's size."""
        squash_s = [0.0]

        def squash(frame: np.ndarray) -> np.ndarray:
            t0 = time.perf_counter()
            small = squash_frame(frame, self.img_size, self.resize)
            squash_s[0] += time.perf_counter() - t0
            return small

        it = iter_clips(result.path, self.clip_seconds, allow_silent=self.allow_silent, info=result.info,
                        frame_transform=squash)
        try:
            while True:
                t0, squash_s[0] = time.perf_counter(), 0.0
                try:
                    clip = next(it)
                except StopIteration:
                    return
                spent = time.perf_counter() - t0
                yield ClipInput(clip.window, clip.frames, clip.log_mel.astype(np.float32, copy=False), clip.silent,
                                clip.index, {"decode": spent - squash_s[0], "squash": squash_s[0]})
        finally:
            it.close()
            for note in getattr(result.info, "decode_notes", None) or []:
                result.warn(note)

    def __call__(self, path: str | Path) -> tuple[VideoResult, Iterator[ClipInput]]:
        """Open ``path`` and return its result record and its clips."""
        result = self.open(path)
        return result, self.clips(result)
