import math
import tracemalloc

import numpy as np
import pytest

from avs_engine.errors import MediaError, NoAudioError
from avs_engine.io.audio import read_audio_16k
from avs_engine.io.clips import Clip, Window, iter_clips, plan_windows
from avs_engine.io.frames import frame_index
from avs_engine.io.logmel import vggish_examples
from tests.media_factory import (
    center_color,
    make_audio_only,
    make_empty_file,
    make_garbage_file,
    make_silent_video,
    make_video,
    make_zero_length_video,
    read_frame_index,
)


# ---- plan_windows ------------------------------------------------------------

def _starts(plan):
    return [w.start for w in plan]


def test_plan_12_by_5():
    plan = plan_windows(12, 5)
    assert _starts(plan) == [0, 5, 7]
    assert [w.new_seconds for w in plan] == [(0, 1, 2, 3, 4), (5, 6, 7, 8, 9), (10, 11)]
    assert all(w.length == 5 for w in plan) and not plan.shortened
    assert plan[2].new_slice == slice(3, 5) and plan[0].new_slice == slice(0, 5)
    assert plan[2].end == 12 and list(plan[2].seconds) == [7, 8, 9, 10, 11]


def test_plan_exact_multiple_and_one_extra():
    assert _starts(plan_windows(5, 5)) == [0]
    assert _starts(plan_windows(10, 5)) == [0, 5]
    plan = plan_windows(6, 5)
    assert _starts(plan) == [0, 1] and plan[1].new_seconds == (5,)


def test_plan_short_video():
    plan = plan_windows(3, 5)
    assert plan.shortened and plan.T == 3 and plan.requested_T == 5
    assert plan == [Window(0, 3, (0, 1, 2), shortened=True)]
    plan = plan_windows(1, 5)
    assert plan.shortened and plan == [Window(0, 1, (0,), shortened=True)]
    assert not plan_windows(1, 1).shortened


@pytest.mark.parametrize("n", range(1, 23))
@pytest.mark.parametrize("T", [1, 2, 3, 5, 7])
def test_plan_every_second_once_from_a_full_window(n, T):
    plan = plan_windows(n, T)
    L = min(n, T)
    covered = [s for w in plan for s in w.new_seconds]
    assert covered == list(range(n))
    for w in plan:
        assert w.length == L and 0 <= w.start and w.end <= n
        assert set(w.new_seconds) <= set(w.seconds)
    assert len(plan) == math.ceil(n / L)


def test_plan_bad_args():
    with pytest.raises(ValueError):
        plan_windows(0, 5)
    with pytest.raises(ValueError):
        plan_windows(5, 0)


# ---- iter_clips ----------------------------------------------------------------

@pytest.fixture(scope="module")
def video12(tmp_path_factory):
    p = tmp_path_factory.mktemp("clips") / "v12.mp4"
    meta = make_video(p, seconds=12.5, fps=25, size=(160, 96))
    return p, meta


def test_iter_clips_windows_frames_audio(video12):
    p, meta = video12
    clips = list(iter_clips(p, 5))
    assert [c.window.start for c in clips] == [0, 5, 7]
    assert [c.index for c in clips] == [0, 1, 2]
    for c in clips:
        assert isinstance(c, Clip) and not c.silent
        assert c.frames.shape == (5, 96, 160, 3) and c.frames.dtype == np.uint8
        assert c.log_mel.shape == (5, 1, 96, 64) and c.log_mel.dtype == np.float32
        for t, sec in enumerate(c.window.seconds):
            assert read_frame_index(c.frames[t]) == frame_index(sec, 25)
            np.testing.assert_allclose(center_color(c.frames[t]), meta["colors"][sec], atol=12)
        w = c.window
        expect = vggish_examples(read_audio_16k(p, w.start, w.end), 5)
        np.testing.assert_allclose(c.log_mel, expect, atol=1e-5)
    assert not clips[0].plan.shortened and clips[0].plan.n_seconds == 12


def test_iter_clips_other_T(video12):
    p, _ = video12
    clips = list(iter_clips(p, 3))
    assert [c.window.start for c in clips] == [0, 3, 6, 9]
    assert all(c.frames.shape[0] == 3 and c.log_mel.shape == (3, 1, 96, 64) for c in clips)


def test_iter_clips_short_video(tmp_path):
    p = tmp_path / "short.mp4"
    make_video(p, seconds=3.2, fps=30)
    clips = list(iter_clips(p, 5))
    assert len(clips) == 1
    c = clips[0]
    assert c.plan.shortened and c.window.length == 3
    assert c.frames.shape == (3, 96, 160, 3) and c.log_mel.shape == (3, 1, 96, 64)
    assert [read_frame_index(f) for f in c.frames] == [28, 58, 88]


def test_iter_clips_allow_silent(tmp_path):
    p = tmp_path / "silent.mp4"
    make_silent_video(p, seconds=6.5)
    with pytest.raises(NoAudioError) as ei:
        iter_clips(p, 5)  # raised at call time
    assert str(ei.value) == f"{p}: no audio track (use --allow-silent to run with silence)"
    clips = list(iter_clips(p, 5, allow_silent=True))
    assert [c.window.start for c in clips] == [0, 1]
    assert all(c.silent for c in clips)
    np.testing.assert_array_equal(clips[0].log_mel, np.float32(math.log(0.01)))


def test_iter_clips_audio_shorter_than_video(tmp_path):
    # Audio ends at 2.5 s in a 6 s video. Window [0, 2): full audio. Window
    # [2, 4): 0.5 s of audio, zero-padded to one example, repeated. Window
    # [4, 6): no audio left, silence.
    p = tmp_path / "shortaudio.mp4"
    make_video(p, seconds=6.0, fps=25, audio_seconds=2.5)
    clips = list(iter_clips(p, 2))
    assert [c.window.start for c in clips] == [0, 2, 4]
    assert all(c.log_mel.shape == (2, 1, 96, 64) and not c.silent for c in clips)
    np.testing.assert_allclose(clips[0].log_mel, vggish_examples(read_audio_16k(p, 0, 2), 2), atol=1e-5)
    tail = read_audio_16k(p, 2, 4)
    assert 0.45 * 16000 < tail.size < 0.6 * 16000
    np.testing.assert_allclose(clips[1].log_mel, vggish_examples(tail, 2), atol=1e-5)
    np.testing.assert_array_equal(clips[1].log_mel[0], clips[1].log_mel[1])
    np.testing.assert_array_equal(clips[2].log_mel, np.float32(math.log(0.01)))


@pytest.mark.parametrize("kind", ["missing", "garbage", "empty", "zero", "audio_only", "directory"])
def test_iter_clips_bad_input(tmp_path, kind):
    p = tmp_path / f"{kind}.mp4"
    if kind == "garbage":
        make_garbage_file(p)
    elif kind == "empty":
        make_empty_file(p)
    elif kind == "zero":
        make_zero_length_video(p)
    elif kind == "audio_only":
        make_audio_only(p, seconds=1)
    elif kind == "directory":
        p.mkdir()
    with pytest.raises(MediaError) as ei:
        iter_clips(p, 5, allow_silent=True)  # raised at call time, before iterating
    msg = str(ei.value)
    assert msg.startswith(f"{p}: ") and "\n" not in msg


def _peak_while_iterating(path):
    tracemalloc.start()
    try:
        n = 0
        for clip in iter_clips(path, 5):
            n += 1
            del clip
        return tracemalloc.get_traced_memory()[1], n
    finally:
        tracemalloc.stop()


def test_iter_clips_memory_does_not_grow_with_length(tmp_path):
    short, long_ = tmp_path / "10s.mp4", tmp_path / "60s.mp4"
    make_video(short, seconds=10, fps=10, size=(160, 96), channels=1, sample_rate=16000)
    make_video(long_, seconds=60, fps=10, size=(160, 96), channels=1, sample_rate=16000)
    peak10, n10 = _peak_while_iterating(short)
    peak60, n60 = _peak_while_iterating(long_)
    assert (n10, n60) == (2, 12)
    # Keeping the 60 s of audio (3.8 MB) or 60 frames (2.8 MB) would show here.
    assert peak60 < 1.2 * peak10 + 500_000, (peak10, peak60)
