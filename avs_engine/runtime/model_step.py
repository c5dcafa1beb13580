"""The model step: a clip's squashed frames and log-mel -> its logits, through the runner's one clip method.

The second of the pipeline's three pieces. Everything that runs the model
(``avs-run``, ``avs-eval``, ``avs-bench``, the scale-out actors) goes through
:meth:`ModelStep.__call__`, which calls ``runner.run_clip`` once per clip;
per-stage seconds come from the runner's own clock (CUDA events on a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..backends.base import Runner
from ..backends.clocks import StageClock, StageObserver
from ..io.clips import Window
from ..io.preprocess import encoder_input


@dataclass
class ClipPrediction:
    """The model's output for one clip window: logits float32 ``[T, 1, L, L]`` (L = 4 x the feature grid)."""

    window: Window
    logits: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)  # preprocess + the runner's stages, seconds

    @classmethod
    def from_row(cls, row, logits: np.ndarray, clip_seconds: int) -> "ClipPrediction":
        """The prediction of a window shipped as a row ``[start, length, first new second, last new + 1]``
        (:attr:`ClipInput.window_row <avs_engine.runtime.clip_source.ClipInput.window_row>`) between tasks."""
        start, length, lo, hi = (int(x) for x in row)
        return cls(Window(start, length, tuple(range(lo, hi)), length < clip_seconds), np.asarray(logits, np.float32))

    def second_logits(self, second: int) -> np.ndarray:
        """float32 ``[1, L, L]`` of one second of the window."""
        i = second - self.window.start
        return self.logits[i : i + 1, 0]


class ModelStep:
    """Runs an activated runner on :class:`~avs_engine.runtime.clip_source.ClipInput` s.

    ``observers``: hooks told when each stage begins and ends (the benchmark
    records peak memory per stage with them).
    """

    def __init__(self, runner: Runner, observers: Sequence[StageObserver] = ()) -> None:
        if not runner.is_active:
            runner.activate()
        self.runner = runner
        self.observers = list(observers)

    @property
    def img_size(self) -> int:
        return self.runner.config.encoder.img_size

    def image(self, frames: np.ndarray) -> np.ndarray:
        """Squashed uint8 ``[T, s, s, 3]`` -> the encoder input float32 ``[T, 3, S, S]``."""
        return encoder_input(frames, self.img_size)

    def logits(self, frames: np.ndarray, log_mel: np.ndarray, timings: dict | None = None) -> np.ndarray:
        """Squashed frames uint8 ``[T, s, s, 3]`` + log-mel float32 ``[T, 1, 96, 64]`` -> logits ``[T, 1, L, L]``.

        ``timings`` (if given) receives ``preprocess`` and each model stage, in seconds."""
        host = StageClock()
        host.observers = self.observers
        with host.stage("preprocess"):
            image = self.image(frames)
        clock = self.runner.stage_clock()
        clock.observers = self.observers
        logits = self.runner.run_clip(image, np.asarray(log_mel, np.float32), clock)
        if timings is not None:
            timings.update(host.seconds())
            timings.update(clock.seconds())
        return logits

    def run_clips(self, clips: Sequence[tuple[np.ndarray, np.ndarray]], max_frames: int = 0,
                  timings: dict | None = None) -> list[np.ndarray]:
        """Many clips (of one or several videos): ``(frames uint8 [T_i, s, s, 3], log_mel float32 [T_i, 1, 96, 64])``
        each, their T may differ -> each clip's logits ``[T_i, 1, L, L]``, as :meth:`logits` gives them.

        Clips go to ``runner.run_clips`` in groups of at most ``max_frames`` frames (a longer clip alone;
        0 or less: one clip at a time). ``timings`` (if given) receives the seconds per stage of all of them."""
        groups: list[list[int]] = []
        for i, (frames, _) in enumerate(clips):
            n = int(frames.shape[0])
            if groups and max_frames > 0 and sum(int(clips[j][0].shape[0]) for j in groups[-1]) + n <= max_frames:
                groups[-1].append(i)
            else:
                groups.append([i])
        host = StageClock()
        host.observers = self.observers
        clock = self.runner.stage_clock()
        clock.observers = self.observers
        out: list[np.ndarray] = []
        for group in groups:
            with host.stage("preprocess"):
                batch = [(self.image(clips[i][0]), np.asarray(clips[i][1], np.float32)) for i in group]
            out.extend(self.runner.run_clips(batch, clock))
        if timings is not None:
            for k, v in {**host.seconds(), **clock.seconds()}.items():
                timings[k] = timings.get(k, 0.0) + v
        return out

    def default_max_frames(self) -> int:
        """Frames per :meth:`run_clips` batch: 0 (clip by clip) on the CPU, a TensorRT engine set's largest T,
        else 16.

        On the CPU a larger batch buys no speed (the cores are busy at one clip) and costs memory: measured
        with the demo model on ONNX Runtime, 8 clips ran no faster in batches of 5-40 frames than clip by
        clip, while the peak RSS grew from 0.2 GB to 0.8 GB at 40 frames."""
        runner = self.runner
        device = getattr(runner, "device_type", None) or getattr(getattr(runner, "device", None), "type", None)
        if runner.name != "tensorrt" and (device or "cpu") == "cpu":
            return 0
        t = getattr(getattr(runner, "manifest", None), "T", None)
        return int(t.max) if runner.name == "tensorrt" and t is not None else 16

    def __call__(self, clip) -> ClipPrediction:
        timings: dict[str, float] = {}
        logits = self.logits(clip.frames, clip.log_mel, timings)
        return ClipPrediction(clip.window, logits, timings)
