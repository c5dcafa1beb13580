"""The log-mel front end against an independent, loop-based computation."""

import math

import numpy as np
import pytest

from avs_engine.io.logmel import (
    log_mel_spectrogram,
    mel_matrix,
    silent_examples,
    vggish_examples,
)

SR = 16000


# ---- independent reference (plain loops / explicit sums, no np.fft) ----------

def ref_mel_matrix():
    def mel(f):
        return 1127.0 * math.log(1.0 + f / 700.0)

    lo_m, hi_m = mel(125.0), mel(7500.0)
    edges = [lo_m + (hi_m - lo_m) * i / 65 for i in range(66)]
    w = np.zeros((257, 64))
    for k in range(1, 257):  # DC (k = 0) keeps zero weight
        m = mel(k * 16000.0 / 512.0)
        for b in range(64):
            left, centre, right = edges[b], edges[b + 1], edges[b + 2]
            if left < m <= centre:
                w[k, b] = (m - left) / (centre - left)
            elif centre < m < right:
                w[k, b] = (right - m) / (right - centre)
    return w


def ref_log_mel_frame(x, j):
    """Log-mel of analysis frame j of x, by an explicit DFT."""
    seg = np.array([x[160 * j + n] * (0.5 - 0.5 * math.cos(2 * math.pi * n / 400)) for n in range(400)])
    n = np.arange(400)
    mags = np.zeros(257)
    for k in range(257):
        re = np.sum(seg * np.cos(2 * math.pi * k * n / 512))
        im = -np.sum(seg * np.sin(2 * math.pi * k * n / 512))
        mags[k] = math.hypot(re, im)
    return np.log(mags @ ref_mel_matrix() + 0.01)


@pytest.fixture(scope="module")
def noise():
    rng = np.random.default_rng(1234)
    return (0.3 * rng.standard_normal(SR)).astype(np.float32)  # 1 s


# ---- tests ---------------------------------------------------------------------

def test_mel_matrix_matches_loop_build():
    w = mel_matrix()
    assert w.shape == (257, 64)
    assert np.all(w[0] == 0)
    np.testing.assert_allclose(w, ref_mel_matrix(), atol=1e-12)
    # Bins above 7500 Hz (k > 240) and below 125 Hz (k < 4) carry no weight.
    assert np.all(w[241:] == 0) and np.all(w[:4] == 0)
    assert np.all(w.max(axis=0) > 0)  # every band sees at least one bin


@pytest.mark.parametrize(
    "n, frames", [(0, 0), (399, 0), (400, 1), (559, 1), (560, 2), (16000, 98), (80000, 498)]
)
def test_frame_count_no_centre_padding(n, frames):
    assert log_mel_spectrogram(np.zeros(n, np.float32)).shape == (frames, 64)


def test_log_mel_matches_explicit_dft(noise):
    lm = log_mel_spectrogram(noise)
    assert lm.dtype == np.float32 and lm.shape == (98, 64)
    for j in (0, 1, 37, 97):
        np.testing.assert_allclose(lm[j], ref_log_mel_frame(noise.astype(np.float64), j), rtol=0, atol=2e-5)


def test_silence_is_log_offset():
    lm = log_mel_spectrogram(np.zeros(2000))
    np.testing.assert_array_equal(lm, np.float32(math.log(0.01)))


def test_one_khz_tone_peaks_in_its_band():
    t = np.arange(SR) / SR
    x = 0.5 * np.sin(2 * np.pi * 1000.0 * t)
    lm = log_mel_spectrogram(x)
    band = int(np.argmax(lm.mean(axis=0)))
    # The band whose triangle contains 1 kHz with the most weight (bin 32 = 1000 Hz exactly).
    w = mel_matrix()
    assert band == int(np.argmax(w[32]))
    m1k = 1127.0 * math.log(1 + 1000 / 700)
    edges = np.linspace(1127.0 * math.log(1 + 125 / 700), 1127.0 * math.log(1 + 7500 / 700), 66)
    assert edges[band] < m1k < edges[band + 2]
    # Pinned against the explicit DFT for frame 0 (a 1 kHz sine, amplitude 0.5).
    np.testing.assert_allclose(lm[0], ref_log_mel_frame(x, 0), atol=2e-5)
    # Hard pins (from the explicit-DFT reference): bands 17..21 and the outer bands.
    assert band == 19
    np.testing.assert_allclose(lm[0, 17:22], [-0.82933884, 2.00053192, 4.11805193, 4.08198159, 1.5701088], atol=2e-5)
    np.testing.assert_allclose(lm[0, [0, 63]], [-4.54229086, -4.60316461], atol=2e-5)
    # At 1 kHz the periodic-Hann-weighted DFT bin is exactly 100 * amplitude = 50.
    assert lm[0, band] > math.log(50 * w[32, band])


@pytest.mark.parametrize("T", [1, 3, 5])
def test_examples_shapes_and_layout(T):
    rng = np.random.default_rng(T)
    x = rng.standard_normal(SR * T).astype(np.float32)
    ex = vggish_examples(x, T)
    assert ex.shape == (T, 1, 96, 64) and ex.dtype == np.float32
    lm = log_mel_spectrogram(x)
    for l in range(T):
        np.testing.assert_array_equal(ex[l, 0], lm[96 * l:96 * (l + 1)])


def test_examples_use_only_the_first_T():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SR * 5)
    np.testing.assert_array_equal(vggish_examples(x, 2), vggish_examples(x[: 2 * SR], 2))
    np.testing.assert_array_equal(vggish_examples(x, 2), vggish_examples(x, 5)[:2])


def test_short_audio_repeats_last_full_example():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(int(2.5 * SR))  # 248 frames: 2 full examples
    ex = vggish_examples(x, 5)
    lm = log_mel_spectrogram(x)
    np.testing.assert_array_equal(ex[0, 0], lm[:96])
    np.testing.assert_array_equal(ex[1, 0], lm[96:192])
    for l in (2, 3, 4):
        np.testing.assert_array_equal(ex[l], ex[1])


def test_shorter_than_one_example_is_zero_padded():
    rng = np.random.default_rng(2)
    x = rng.standard_normal(5000)
    ex = vggish_examples(x, 3)
    padded = np.concatenate([x, np.zeros(15600 - 5000)])
    lm = log_mel_spectrogram(padded)
    assert lm.shape == (96, 64)
    for l in range(3):
        np.testing.assert_array_equal(ex[l, 0], lm)
    np.testing.assert_array_equal(vggish_examples(np.zeros(0), 2), silent_examples(2))
    np.testing.assert_array_equal(vggish_examples(np.zeros(SR * 2), 2), silent_examples(2))


def test_bad_args():
    with pytest.raises(ValueError):
        vggish_examples(np.zeros(SR), 0)
    with pytest.raises(ValueError):
        log_mel_spectrogram(np.zeros((2, 1000)))
