import numpy as np
import pytest

from avs_engine.errors import MediaError
from avs_engine.io.frames import frame_index, iter_second_frames, n_seconds
from avs_engine.io.probe import MediaInfo, probe
from tests.media_factory import center_color, make_garbage_file, make_silent_video, make_video, read_frame_index


def _info(duration, fps, n_frames=None):
    n = int(round(duration * fps)) if n_frames is None else n_frames
    return MediaInfo("x.mp4", duration, fps, n, 160, 96, True, 44100, 2)


def test_frame_index():
    assert [frame_index(l, 25) for l in range(5)] == [23, 48, 73, 98, 123]
    assert [frame_index(l, 30) for l in range(3)] == [28, 58, 88]
    assert [frame_index(l, 30000 / 1001) for l in range(3)] == [28, 58, 88]
    assert frame_index(0, 16) == 15
    assert frame_index(0, 1) == 0


def test_n_seconds():
    assert n_seconds(_info(6.5, 25)) == 6  # second 6 would need frame 173 of 162
    assert n_seconds(_info(5.0, 25)) == 5  # frame 123 of 125
    assert n_seconds(_info(4.96, 25)) == 5  # 124 frames, frame 123 exists
    assert n_seconds(_info(4.9, 25)) == 4  # 122 frames
    assert n_seconds(_info(0.5, 25)) == 1  # shorter than 15/16 s: still one second
    assert n_seconds(_info(60.0, 29.97)) == 60
    assert n_seconds(_info(10.0, 30000 / 1001)) == 10
    assert n_seconds(_info(1.0, 25, n_frames=0)) == 0


@pytest.mark.parametrize("fps", [25, 30, 29.97])
def test_sampled_frames_match_known_content(tmp_path, fps):
    p = tmp_path / "v.mp4"
    meta = make_video(p, seconds=6.5, fps=fps, size=(160, 96))
    info = probe(p)
    got = list(iter_second_frames(p))
    assert [s for s, _ in got] == list(range(6))
    for sec, img in got:
        assert img.shape == (96, 160, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
        assert read_frame_index(img) == frame_index(sec, info.fps)
        np.testing.assert_allclose(center_color(img), meta["colors"][sec], atol=12)


@pytest.mark.parametrize("suf", ["mkv", "avi", "webm"])
def test_other_containers(tmp_path, suf):
    p = tmp_path / f"v.{suf}"
    make_video(p, seconds=3.2, fps=25, audio=False)
    got = list(iter_second_frames(p))
    assert [read_frame_index(img) for _, img in got] == [23, 48, 73]


def test_subset_and_past_end(tmp_path):
    p = tmp_path / "v.mp4"
    make_silent_video(p, seconds=6.5, fps=25)
    got = list(iter_second_frames(p, seconds=[3, 1]))
    assert [(s, read_frame_index(im)) for s, im in got] == [(1, 48), (3, 98)]
    # Second 10 needs frame 273; the stream has 162 frames: the last one stands in.
    got = list(iter_second_frames(p, seconds=[0, 10]))
    assert [(s, read_frame_index(im)) for s, im in got] == [(0, 23), (10, 161)]
    assert list(iter_second_frames(p, seconds=[])) == []


def test_missing_timestamps_use_frame_on_screen(tmp_path):
    # Frames 23, 48 and 49 are absent (a VFR-like stream): second 0 shows frame 22
    # at time 23/25 s, second 1 shows frame 47.
    p = tmp_path / "vfr.mp4"
    make_video(p, seconds=3, fps=25, audio=False, drop_frames=[23, 48, 49])
    got = [(s, read_frame_index(im)) for s, im in iter_second_frames(p)]
    assert got == [(0, 22), (1, 47), (2, 73)]


def test_short_video_one_second(tmp_path):
    p = tmp_path / "short.mp4"
    make_silent_video(p, seconds=0.4, fps=25)  # 10 frames; second 0 wants frame 23
    got = list(iter_second_frames(p))
    assert len(got) == 1 and read_frame_index(got[0][1]) == 9


def test_errors_raised_at_call(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        iter_second_frames(tmp_path / "missing.mp4")
    g = make_garbage_file(tmp_path / "g.mp4")
    with pytest.raises(MediaError, match="not a readable media file"):
        iter_second_frames(g)
