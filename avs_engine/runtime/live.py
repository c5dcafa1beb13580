"""The live model step: one second in, the mask logits of its causal window out, with an embedding cache.

The image encoder (with its audio adapters) sees one frame and that second's
audio embedding, so its output is per frame and can be kept; only the
ST-BAVA fusion spans the window, and only the newest frame needs the
decoder. :class:`LiveStep` keeps a ring of the last T seconds' encoder
outputs ``enc [1, C, G, G]`` and audio embeddings ``a128 [1, A]``; each
pushed second costs one audio example, one encoder frame, one fusion over
the ring and one decoder frame. The logits for second t are those of the
window ``[t - T + 1, t]`` (shorter at the start) at its last position:
what :func:`avs_engine.runtime.causal.causal_logits` computes offline with
``Runner.run_clip``.

Audio per second is :func:`second_example`: the log-mel of the second's own
first 0.975 s (the ``per_second`` layout), so that a second's embedding does
not depend on where a window starts and can be cached.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..backends.base import Runner
from ..io.logmel import EXAMPLE_SAMPLES, SAMPLE_RATE, vggish_examples
from ..io.preprocess import encoder_input


def second_example(samples_16k: np.ndarray) -> np.ndarray:
    """One second's VGGish example from its 16 kHz mono samples (the first 15600 are used; fewer are
    zero-padded at the end): float32 ``[1, 1, 96, 64]``."""
    return vggish_examples(np.asarray(samples_16k, np.float32)[:EXAMPLE_SAMPLES], 1, "per_second")


def second_samples(track_16k: np.ndarray, second: int) -> np.ndarray:
    """The samples of ``second`` that :func:`second_example` reads, from a whole 16 kHz track ``[n]``."""
    a = int(second) * SAMPLE_RATE
    return track_16k[a: a + EXAMPLE_SAMPLES]


@dataclass
class _Entry:
    second: int
    enc: np.ndarray   # [1, C, G, G]
    a128: np.ndarray  # [1, A]


@dataclass
class LiveResult:
    """The step's output for one second: logits float32 ``[1, 1, L, L]`` from the window ``seconds``."""

    second: int
    logits: np.ndarray
    seconds: tuple[int, ...]
    timings: dict[str, float] = field(default_factory=dict)


class LiveStep:
    """Runs an activated runner second by second over a ring of the last ``clip_seconds`` seconds.

    :meth:`push` takes one second (its squashed frame uint8 ``[s, s, 3]`` and its log-mel example
    ``[1, 1, 96, 64]``). Seconds must come in increasing order; a gap (a second dropped because
    inference fell behind) is allowed: the window then holds the seconds of ``[t - T + 1, t]`` that
    were pushed. Memory is the ring: T encoder outputs and T audio embeddings.
    """

    def __init__(self, runner: Runner, clip_seconds: int = 5) -> None:
        if int(clip_seconds) < 1:
            raise ValueError(f"clip_seconds must be >= 1, got {clip_seconds}")
        if not runner.is_active:
            runner.activate()
        self.runner = runner
        self.clip_seconds = int(clip_seconds)
        self._ring: deque[_Entry] = deque(maxlen=self.clip_seconds)

    @property
    def img_size(self) -> int:
        return self.runner.config.encoder.img_size

    @property
    def window(self) -> tuple[int, ...]:
        """The seconds held in the ring, oldest first."""
        return tuple(e.second for e in self._ring)

    def reset(self) -> None:
        self._ring.clear()

    def push(self, second: int, frame: np.ndarray, log_mel: np.ndarray) -> LiveResult:
        """Second ``second``: squashed frame uint8 ``[s, s, 3]``, log-mel float32 ``[1, 1, 96, 64]``
        -> :class:`LiveResult` (logits ``[1, 1, L, L]`` of the window ending at ``second``)."""
        second = int(second)
        if self._ring and second <= self._ring[-1].second:
            raise ValueError(f"seconds must increase: got {second} after {self._ring[-1].second}")
        run = self.runner.run
        times: dict[str, float] = {}
        t0 = time.perf_counter()
        image = encoder_input(np.asarray(frame)[None], self.img_size)
        t1 = time.perf_counter()
        a128 = run("audio", {"log_mel": np.asarray(log_mel, np.float32).reshape(1, 1, 96, 64)})["a128"]
        t2 = time.perf_counter()
        enc = run("image_encoder", {"image": image, "a128": a128})["enc"]
        t3 = time.perf_counter()
        while self._ring and self._ring[0].second <= second - self.clip_seconds:
            self._ring.popleft()   # out of the window (seconds were dropped in between)
        self._ring.append(_Entry(second, np.asarray(enc), np.asarray(a128)))
        encs = np.concatenate([e.enc for e in self._ring])     # [t, C, G, G]
        a128s = np.concatenate([e.a128 for e in self._ring])   # [t, A]
        fused = run("fusion", {"enc": encs, "a128": a128s})
        t4 = time.perf_counter()
        logits = run("mask_decoder", {"enc": encs[-1:], "dense": fused["dense"][-1:],
                                      "sparse": fused["sparse"][-1:]})["logits"]
        t5 = time.perf_counter()
        times.update(preprocess=t1 - t0, audio=t2 - t1, image_encoder=t3 - t2, fusion=t4 - t3, mask_decoder=t5 - t4)
        return LiveResult(second, np.asarray(logits, np.float32), self.window, times)


__all__ = ["LiveStep", "LiveResult", "second_example", "second_samples"]
