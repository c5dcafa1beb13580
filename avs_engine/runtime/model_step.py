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

    def __call__(self, clip) -> ClipPrediction:
        timings: dict[str, float] = {}
        logits = self.logits(clip.frames, clip.log_mel, timings)
        return ClipPrediction(clip.window, logits, timings)
