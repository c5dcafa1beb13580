import pytest

from avs_engine.errors import MediaError, NoAudioError
from avs_engine.io.probe import MediaInfo, probe
from tests.media_factory import (
    make_audio_only,
    make_empty_file,
    make_garbage_file,
    make_silent_video,
    make_video,
    make_zero_length_video,
)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("probe")
    out = {}
    out["mp4"] = d / "a.mp4"
    make_video(out["mp4"], seconds=6.5, fps=25, size=(160, 96))
    out["ntsc"] = d / "ntsc.mp4"
    make_video(out["ntsc"], seconds=3, fps=29.97, size=(128, 64), channels=1, sample_rate=48000)
    for suf in ("mkv", "avi", "webm", "mov"):
        out[suf] = d / f"a.{suf}"
        make_video(out[suf], seconds=4.0, fps=30)
    out["silent"] = d / "silent.mp4"
    make_silent_video(out["silent"], seconds=2)
    out["garbage"] = d / "garbage.mp4"
    make_garbage_file(out["garbage"])
    out["empty"] = d / "empty.mp4"
    make_empty_file(out["empty"])
    out["zero"] = d / "zero.mp4"
    make_zero_length_video(out["zero"])
    out["audio_only"] = d / "audio.m4a"
    make_audio_only(out["audio_only"], seconds=2)
    out["dir"] = d
    out["missing"] = d / "nope.mp4"
    return out


def test_probe_mp4(media):
    info = probe(media["mp4"])
    assert isinstance(info, MediaInfo)
    assert info.path == str(media["mp4"])
    assert info.fps == pytest.approx(25.0)
    assert info.n_frames == 162  # round(6.5 * 25)
    assert info.duration_s == pytest.approx(6.5, abs=0.05)
    assert (info.width, info.height) == (160, 96)
    assert info.has_audio and info.audio_rate == 44100 and info.audio_channels == 2
    assert info.start_s == pytest.approx(0.0)
    with pytest.raises(Exception):
        info.fps = 3  # frozen


def test_probe_ntsc_mono(media):
    info = probe(media["ntsc"])
    assert info.fps == pytest.approx(30000 / 1001)
    assert info.n_frames == 90
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    assert (info.width, info.height) == (128, 64)
    assert info.audio_rate == 48000 and info.audio_channels == 1


@pytest.mark.parametrize("suf", ["mkv", "avi", "webm", "mov"])
def test_probe_containers(media, suf):
    info = probe(media[suf])
    assert info.fps == pytest.approx(30.0)
    assert info.duration_s == pytest.approx(4.0, abs=0.1)
    assert abs(info.n_frames - 120) <= 2
    assert info.has_audio


def test_probe_silent(media):
    info = probe(media["silent"])
    assert not info.has_audio and info.audio_rate == 0 and info.audio_channels == 0
    assert info.n_frames == 50


@pytest.mark.parametrize(
    "key, words",
    [
        ("missing", "not found"),
        ("dir", "directory"),
        ("empty", "empty"),
        ("garbage", "not a readable media file"),
        ("zero", "zero-length"),
        ("audio_only", "no video stream"),
    ],
)
def test_probe_bad_input(media, key, words):
    with pytest.raises(MediaError) as ei:
        probe(media[key])
    msg = str(ei.value)
    assert not isinstance(ei.value, NoAudioError)
    assert msg.startswith(str(media[key]))
    assert words in msg
    assert "\n" not in msg
