"""VGGish's log-mel front end in numpy (docs/model.md, section 2).

Input: 16 kHz mono float samples. Short-time analysis: frames of 400 samples
(25 ms) taken every 160 samples (10 ms) without centre padding, so ``n``
samples give ``1 + (n - 400) // 160`` frames (none below 400 samples); each
frame is multiplied by a periodic Hann window of length 400, zero-padded to
512 and transformed with a real FFT, keeping the magnitude (257 bins).
A 64-band mel filterbank maps the 257 bins to mel energies: HTK mel scale
``mel(f) = 1127 ln(1 + f/700)``, 66 edges equally spaced in mel between
125 Hz and 7500 Hz; band ``b`` is a triangle rising from edge ``b`` to edge
``b+1`` and falling to edge ``b+2``, evaluated (in mel) at each FFT bin's
centre frequency ``k * 16000 / 512``; the DC bin gets no weight. Output is
``log(mel_energy + 0.01)``.

Examples: 96 consecutive frames (0.96 s of hops, 0.975 s = 15600 samples of
audio), one per second of a window, in one of two layouts:

- ``"avsbench"`` (back to back, what the model was trained on): example ``l``
  holds frames ``96 l .. 96 l + 95`` of the window's log-mel, audio
  ``[0.96 l, 0.96 l + 0.975)`` s. It drifts early by 0.04 s per second: fine
  for the trained T = 5 (example 4 starts 0.16 s before second 4), not for
  long windows (at T = 12 example 11 covers 10.56-11.54 s while its frame is
  at 11.94 s; at T = 64 the drift is 2.5 s).
- ``"per_second"``: example ``l`` holds frames ``100 l .. 100 l + 95``, audio
  ``[l, l + 0.975)`` s: every second gets exactly what example 0 of the
  trained layout gets, its own first 0.975 s, which contains the frame
  sampled at ``l + 15/16`` s. Chosen over centring on that frame because it
  never reads the next second's audio (nor past the end of the video), and
  over ending at ``l + 1`` because it leaves 25 ms of slack for audio tracks
  a few milliseconds shorter than their video.

:func:`window_examples` (what ``io.clips`` uses) takes the trained layout for
T <= 5, where the two differ by at most 0.16 s, and ``per_second`` above.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
WIN = 400  # samples per analysis frame (25 ms)
HOP = 160  # samples between frames (10 ms)
N_FFT = 512
N_MELS = 64
FMIN = 125.0
FMAX = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_FRAMES = 96  # frames per example (0.96 s)
# Samples needed for one full example: 400 + 95 * 160.
EXAMPLE_SAMPLES = WIN + (EXAMPLE_FRAMES - 1) * HOP
LAYOUTS = ("avsbench", "per_second")
TRAINED_MAX_T = 5  # longest window that keeps the trained back-to-back layout
SECOND_FRAMES = SAMPLE_RATE // HOP  # log-mel frames per second (100)


def hz_to_mel(f):
    """HTK mel: ``1127 ln(1 + f / 700)`` (array or scalar)."""
    return 1127.0 * np.log1p(np.asarray(f, np.float64) / 700.0)


def periodic_hann(n: int = WIN) -> np.ndarray:
    """Periodic Hann window ``0.5 - 0.5 cos(2 pi k / n)``, k = 0..n-1, float64 ``[n]``."""
    k = np.arange(n, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * k / n)


def mel_matrix(
    n_mels: int = N_MELS,
    n_fft: int = N_FFT,
    sample_rate: int = SAMPLE_RATE,
    fmin: float = FMIN,
    fmax: float = FMAX,
) -> np.ndarray:
    """Triangular HTK mel filterbank, float64 ``[n_fft // 2 + 1, n_mels]`` (bins x bands).

    ``magnitudes [F, n_fft//2+1] @ mel_matrix() -> [F, n_mels]``.
    """
    if not 0.0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= {sample_rate / 2}, got {fmin}, {fmax}")
    n_bins = n_fft // 2 + 1
    bin_mel = hz_to_mel(np.arange(n_bins) * (sample_rate / n_fft))[:, None]  # [bins, 1]
    edges = np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2)
    lo, mid, hi = edges[:-2][None], edges[1:-1][None], edges[2:][None]  # [1, bands]
    up = (bin_mel - lo) / (mid - lo)
    down = (hi - bin_mel) / (hi - mid)
    w = np.maximum(0.0, np.minimum(up, down))
    w[0, :] = 0.0  # DC bin
    return w


_MEL = mel_matrix()
_WINDOW = periodic_hann()


def n_frames(n_samples: int) -> int:
    """Frames in ``n_samples`` samples: ``1 + (n - 400) // 160``, or 0 when n < 400."""
    return 0 if n_samples < WIN else 1 + (n_samples - WIN) // HOP


def frame_signal(samples: np.ndarray) -> np.ndarray:
    """Overlapping frames, a read-only view ``[F, 400]`` of ``samples [n]``."""
    x = np.asarray(samples)
    f = n_frames(x.shape[0])
    if f == 0:
        return np.zeros((0, WIN), x.dtype)
    return np.lib.stride_tricks.as_strided(
        x, shape=(f, WIN), strides=(HOP * x.strides[0], x.strides[0]), writeable=False
    )


def log_mel_spectrogram(samples_16k: np.ndarray) -> np.ndarray:
    """Log-mel of 16 kHz mono samples ``[n]`` -> float32 ``[F, 64]``, F = ``1 + (n-400)//160``."""
    x = np.ascontiguousarray(samples_16k, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected mono samples [n], got shape {x.shape}")
    frames = frame_signal(x)
    if frames.shape[0] == 0:
        return np.zeros((0, N_MELS), np.float32)
    mag = np.abs(np.fft.rfft(frames * _WINDOW, n=N_FFT, axis=1))  # [F, 257]
    return np.log(mag @ _MEL + LOG_OFFSET).astype(np.float32)


def vggish_examples(samples_16k: np.ndarray, T: int, layout: str = "avsbench") -> np.ndarray:
    """The ``T`` VGGish examples of one window's audio: float32 ``[T, 1, 96, 64]``.

    ``layout="avsbench"``: example ``l`` = frames ``96 l .. 96 l + 95`` of the
    window's log-mel, i.e. audio ``0.96 l .. 0.96 (l+1)`` s (plus the 15 ms
    tail of its last frame) from the window's start. ``layout="per_second"``:
    frames ``100 l .. 100 l + 95``, audio ``[l, l + 0.975)`` s. With fewer than
    ``T`` full examples the last full one is repeated; with not even one
    (fewer than 15600 samples = 0.975 s), the samples are first zero-padded at
    the end to 15600.
    """
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    step = EXAMPLE_FRAMES if layout == "avsbench" else SECOND_FRAMES  # frames between example starts
    x = np.asarray(samples_16k, dtype=np.float64).reshape(-1)
    need = min(x.shape[0], WIN + ((T - 1) * step + EXAMPLE_FRAMES - 1) * HOP)  # no more than T examples use
    x = x[:need]
    if x.shape[0] < EXAMPLE_SAMPLES:
        x = np.concatenate([x, np.zeros(EXAMPLE_SAMPLES - x.shape[0])])
    lm = log_mel_spectrogram(x)
    n_full = min(T, (lm.shape[0] - EXAMPLE_FRAMES) // step + 1)
    ex = np.stack([lm[l * step: l * step + EXAMPLE_FRAMES] for l in range(n_full)])
    if n_full < T:
        ex = np.concatenate([ex, np.repeat(ex[-1:], T - n_full, axis=0)], axis=0)
    return np.ascontiguousarray(ex[:, None], dtype=np.float32)


def example_layout(T: int) -> str:
    """The layout a window of ``T`` seconds uses: the trained one up to T = 5, one example per second above."""
    return "avsbench" if T <= TRAINED_MAX_T else "per_second"


def window_examples(samples_16k: np.ndarray, T: int) -> np.ndarray:
    """``vggish_examples`` of a clip window in :func:`example_layout` ``(T)``: float32 ``[T, 1, 96, 64]``."""
    return vggish_examples(samples_16k, T, example_layout(T))


def silent_examples(T: int) -> np.ndarray:
    """What ``vggish_examples`` gives for all-zero audio: ``log(0.01)`` everywhere, ``[T,1,96,64]``."""
    return np.full((T, 1, EXAMPLE_FRAMES, N_MELS), np.log(LOG_OFFSET), np.float32)


__all__ = [
    "log_mel_spectrogram", "mel_matrix", "vggish_examples", "silent_examples", "hz_to_mel",
    "periodic_hann", "n_frames", "frame_signal", "SAMPLE_RATE", "EXAMPLE_FRAMES", "EXAMPLE_SAMPLES",
    "window_examples", "example_layout", "LAYOUTS", "TRAINED_MAX_T",
]
