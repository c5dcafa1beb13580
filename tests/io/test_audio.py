from fractions import Fraction

import av
import numpy as np
import pytest

from avs_engine.errors import MediaError, NoAudioError
from avs_engine.io.audio import Mono16k, iter_audio_16k, read_audio_16k
from tests.media_factory import make_audio_only, make_garbage_file, make_silent_video, make_video

SR = 16000
TONES = [300.0, 700.0, 1300.0, 450.0]


def reference_16k(tones, seconds, delay_s=0.0, amplitude=0.5):
    """The factory's signal, written independently at 16 kHz."""
    n = int(round(seconds * SR))
    f = np.asarray(tones, float)[np.minimum(np.arange(n) // SR, len(tones) - 1)]
    sig = amplitude * np.sin(2 * np.pi * (np.cumsum(f) - f) / SR)
    return np.concatenate([np.zeros(int(round(delay_s * SR))), sig])


def best_lag(x, ref, max_lag=300, margin=800):
    """Lag L maximising sum x[i + L] * ref[i] (x late by L samples)."""
    n = min(len(x), len(ref)) - margin
    lags = np.arange(-max_lag, max_lag + 1)
    scores = [np.dot(x[margin + L:n + L], ref[margin:n]) for L in lags]
    return int(lags[int(np.argmax(scores))])


def peak_hz(x):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * SR / len(x)


@pytest.fixture(scope="module")
def stereo(tmp_path_factory):
    p = tmp_path_factory.mktemp("audio") / "s.mp4"
    make_video(p, seconds=4, tone_hz=TONES, channels=2, sample_rate=44100)
    return p


def test_tone_per_second(stereo):
    x = read_audio_16k(stereo)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - 4 * SR) < 1024  # AAC may add up to a frame at the end
    for sec, f in enumerate(TONES):
        seg = x[sec * SR + 1000:(sec + 1) * SR - 1000]
        assert peak_hz(seg) == pytest.approx(f, abs=2.0)
        assert np.sqrt(np.mean(seg.astype(np.float64) ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.03)


def test_aligned_to_video_time_zero(stereo):
    x = read_audio_16k(stereo).astype(np.float64)
    assert best_lag(x, reference_16k(TONES, 4)) == 0


def test_chunks_concatenate_to_read(stereo):
    chunks = list(iter_audio_16k(stereo))
    assert len(chunks) > 10 and all(c.dtype == np.float32 and c.ndim == 1 for c in chunks)
    np.testing.assert_array_equal(np.concatenate(chunks), read_audio_16k(stereo))


def test_read_range(stereo):
    full = read_audio_16k(stereo)
    part = read_audio_16k(stereo, 1.0, 2.5)
    assert part.shape == (24000,)
    np.testing.assert_array_equal(part, full[16000:40000])
    np.testing.assert_array_equal(read_audio_16k(stereo, 3.5), full[56000:])
    assert read_audio_16k(stereo, 10.0, 11.0).shape == (0,)
    assert read_audio_16k(stereo, 2.0, 2.0).shape == (0,)


@pytest.mark.parametrize("suf", [".mp4", ".avi"])
def test_stereo_mean_not_ffmpeg_downmix(tmp_path, suf):
    # Left = tone, right = silence: the mean has half the amplitude
    # (FFmpeg's downmix would give 1/sqrt(2) of it).
    p = tmp_path / f"lr{suf}"
    make_video(p, seconds=2, tone_hz=[1000, 1000], channels=2, left_only=True)
    x = read_audio_16k(p)[2000:-2000].astype(np.float64)
    rms = np.sqrt(np.mean(x ** 2))
    assert rms == pytest.approx(0.25 / np.sqrt(2), rel=0.03)


@pytest.mark.parametrize(
    "suf, channels, rate",
    [(".avi", 1, 22050), (".avi", 6, 48000), (".mp4", 1, 48000), (".mp4", 6, 44100), (".webm", 2, 48000), (".mkv", 2, 32000)],
)
def test_layouts_and_rates(tmp_path, suf, channels, rate):
    p = tmp_path / f"v{suf}"
    make_video(p, seconds=2, tone_hz=[500, 900], channels=channels, sample_rate=rate)
    x = read_audio_16k(p)
    assert abs(len(x) - 2 * SR) < 1100
    assert peak_hz(x[1000:15000]) == pytest.approx(500, abs=2)
    assert peak_hz(x[17000:31000]) == pytest.approx(900, abs=2)
    if suf == ".avi":  # PCM: exact levels; every channel carries the tone, so the mean does too
        rms = np.sqrt(np.mean(x[1000:31000].astype(np.float64) ** 2))
        assert rms == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
        assert best_lag(x.astype(np.float64), reference_16k([500, 900], 2)) == 0


@pytest.mark.parametrize("suf, tol", [(".mkv", 1), (".mp4", 16)])
def test_late_audio_start_padded(tmp_path, suf, tol):
    # Audio starting 0.5 s after the video: 8000 leading zeros (mp4 edit lists
    # are in milliseconds, hence the looser tolerance there).
    p = tmp_path / f"late{suf}"
    make_video(p, seconds=3, tone_hz=TONES[:3], audio_delay_s=0.5)
    x = read_audio_16k(p).astype(np.float64)
    assert np.abs(x[:7600]).max() < 0.01  # (AAC smears an onset over its 1024-sample block)
    assert abs(best_lag(x, reference_16k(TONES[:3], 3, delay_s=0.5))) <= tol


def _frame(pts, n=1024, value=1.0, rate=SR, layout="stereo"):
    ch = 2 if layout == "stereo" else 1
    data = np.full((ch, n), value, np.float32)
    if ch == 2:
        data[1] = 0.0  # mean of (value, 0)
    f = av.AudioFrame.from_ndarray(data, format="fltp", layout=layout)
    f.sample_rate = rate
    f.pts = pts
    f.time_base = Fraction(1, rate)
    return f


def _run(frames, origin=0.0):
    m = Mono16k(origin)
    out = []
    for f in frames:
        out += m.push(f)
    out += m.finish()
    return np.concatenate(out)


def test_mono16k_alignment_rules():
    # Late start: zeros first.
    x = _run([_frame(1600), _frame(1600 + 1024)])
    assert x.shape == (1600 + 2048,)
    assert np.all(x[:1600] == 0) and np.allclose(x[1600:], 0.5)
    # Starting before time 0 (e.g. priming left in): cut.
    x = _run([_frame(-320), _frame(704)])
    assert x.shape == (2048 - 320,) and np.allclose(x, 0.5)
    # A gap larger than 20 ms is filled with silence; jitter below is ignored.
    x = _run([_frame(0), _frame(1024 + 5), _frame(2048 + 2048)])
    assert x.shape == (2048 + 2048 + 1024,)
    assert np.allclose(x[:2048], 0.5) and np.all(x[2048:4096] == 0) and np.allclose(x[4096:], 0.5)
    # Overlap larger than 20 ms: the repeated span is dropped.
    x = _run([_frame(0), _frame(1024 - 512)])
    assert x.shape == (1024 + 512,)
    # Origin = video start time.
    x = _run([_frame(16000)], origin=1.0)
    assert x.shape == (1024,)


def test_mono16k_resamples_and_changes_layout():
    # 48 kHz mono then 48 kHz stereo mid-stream: a new resampler, same timeline.
    frames = [_frame(i * 960, n=960, rate=48000, layout="mono") for i in range(50)]
    frames += [_frame(48000 + i * 960, n=960, rate=48000, layout="stereo") for i in range(50)]
    x = _run(frames)
    assert abs(x.shape[0] - 32000) <= 32
    assert np.allclose(x[200:15800], 1.0, atol=1e-3)
    assert np.allclose(x[16200:31800], 0.5, atol=1e-3)


def test_no_audio_and_bad_files(tmp_path):
    s = tmp_path / "silent.mp4"
    make_silent_video(s, seconds=1)
    with pytest.raises(NoAudioError) as ei:
        iter_audio_16k(s)
    assert str(ei.value) == f"{s}: no audio track (use --allow-silent to run with silence)"
    with pytest.raises(NoAudioError):
        read_audio_16k(s)
    with pytest.raises(MediaError, match="not found"):
        read_audio_16k(tmp_path / "missing.mp4")
    g = make_garbage_file(tmp_path / "g.mp4")
    with pytest.raises(MediaError, match="not a readable media file"):
        iter_audio_16k(g)


def test_audio_only_file(tmp_path):
    p = tmp_path / "a.m4a"
    make_audio_only(p, seconds=2)
    x = read_audio_16k(p)
    assert abs(len(x) - 2 * SR) < 1100
    assert peak_hz(x[1000:15000]) == pytest.approx(300, abs=2)
