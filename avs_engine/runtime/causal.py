"""Causal windows computed offline from a file: what live mode should give, through ``Runner.run_clip``.

For each second t of a video, the mask comes from the window of the last T
seconds ``[max(0, t - T + 1), t]`` (shorter at the start), taken at its last
position; each second's audio is its own example (:func:`live.second_example`).
This is the reference the live step (:class:`avs_engine.runtime.live.LiveStep`)
is tested against, and what the causality benchmark scores against the
offline windows. It runs the whole model once per second (T frames each):
slow, on purpose the plain way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from ..backends.base import Runner
from ..io.audio import read_audio_16k
from ..io.frames import iter_second_frames
from ..io.logmel import silent_examples
from ..io.preprocess import encoder_input, squash_frame
from ..io.probe import probe
from .live import second_example, second_samples


def causal_inputs(path: str | Path, img_size: int, resize: str = "avsbench",
                  allow_silent: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Every second of ``path``: squashed frames uint8 ``[N, s, s, 3]`` and per-second examples float32 ``[N, 1, 96, 64]``."""
    info = probe(str(path))
    frames = np.stack([f for _, f in iter_second_frames(path, info=info,
                                                        transform=lambda rgb: squash_frame(rgb, img_size, resize))])
    n = len(frames)
    if info.has_audio:
        track = read_audio_16k(path)
        examples = np.concatenate([second_example(second_samples(track, s)) for s in range(n)])
    elif allow_silent:
        examples = silent_examples(n)
    else:
        raise ValueError(f"{path}: no audio track")
    return frames, examples


def causal_logits(runner: Runner, frames: np.ndarray, examples: np.ndarray, clip_seconds: int = 5) -> Iterator[np.ndarray]:
    """For each second t: logits float32 ``[1, 1, L, L]`` of the window ``[max(0, t-T+1), t]`` at its last position,
    from :func:`causal_inputs`' ``frames [N, s, s, 3]`` and ``examples [N, 1, 96, 64]``."""
    S = runner.config.encoder.img_size
    for t in range(len(frames)):
        a = max(0, t - int(clip_seconds) + 1)
        logits = runner.run_clip(encoder_input(frames[a: t + 1], S), examples[a: t + 1])
        yield logits[-1:]


__all__ = ["causal_inputs", "causal_logits"]
