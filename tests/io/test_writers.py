"""writers: atomic PNG/JSON, and the streaming overlay video (tint, frames, audio)."""

import json
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from avs_engine.errors import MediaError, ShapeError
from avs_engine.atomic import write_json_atomic
from avs_engine.io.writers import OverlayWriter, write_mask_png
from tests.media_factory import (
    center_color,
    make_garbage_file,
    make_silent_video,
    make_video,
    read_frame_index,
)

W, H, FPS, SECONDS = 160, 96, 25, 4.5


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- PNG / JSON


def test_write_mask_png(tmp_path):
    m = np.zeros((7, 9), bool)
    m[2:5, 1:4] = True
    p = write_mask_png(tmp_path / "m.png", m)
    img = Image.open(p)
    assert img.format == "PNG" and img.mode == "L" and img.size == (9, 7)
    a = np.asarray(img)
    assert set(np.unique(a)) == {0, 255}
    np.testing.assert_array_equal(a == 255, m)
    assert _leftovers(tmp_path) == []
    with pytest.raises(ShapeError):
        write_mask_png(tmp_path / "bad.png", np.zeros((2, 3, 1), bool))


def test_write_json_atomic(tmp_path):
    p = tmp_path / "r.json"
    write_json_atomic(p, {"a": np.float32(0.5), "n": np.int64(3), "v": np.arange(3), "p": tmp_path})
    assert json.loads(p.read_text()) == {"a": 0.5, "n": 3, "v": [0, 1, 2], "p": str(tmp_path)}
    # A failed write leaves the previous file as it was and no temporary behind.
    with pytest.raises(TypeError):
        write_json_atomic(p, {"x": object()})
    assert json.loads(p.read_text())["n"] == 3
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------- overlay


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    d = tmp_path_factory.mktemp("ov")
    return make_video(d / "src.mp4", seconds=SECONDS, fps=FPS, size=(W, H))


def _left_half():
    m = np.zeros((H, W), bool)
    m[:, : W // 2] = True
    return m


def _decode_rgb(path):
    """{frame index (from the bit strip): RGB frame}, and the frame count."""
    frames = {}
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            rgb = f.to_ndarray(format="rgb24")
            frames[read_frame_index(rgb)] = rgb
    return frames


def _decode_mono(path):
    with av.open(str(path)) as c:
        a = c.streams.audio[0]
        rate = a.rate
        chunks = [f.to_ndarray().reshape(f.samples, -1) if f.format.is_packed else f.to_ndarray().T
                  for f in c.decode(audio=0)]
    return np.concatenate(chunks).astype(np.float64).mean(axis=1), rate


def _peak_hz(x, rate):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)]


@pytest.fixture(scope="module")
def overlay(src, tmp_path_factory):
    dst = tmp_path_factory.mktemp("ovout") / "overlay.mp4"
    with OverlayWriter(src["path"], dst) as w:
        w.add_second(0, _left_half())
        w.add_second(2, _left_half())   # second 1 gets no mask: stays untinted
    return dst, w


def test_overlay_frames_and_tint(src, overlay):
    dst, w = overlay
    assert w.frames_written == src["n_frames"]
    with av.open(str(dst)) as c:
        vs = c.streams.video[0]
        assert (vs.width, vs.height) == (W, H)
        assert vs.codec_context.name == "h264" and vs.format.name == "yuv420p"
        assert vs.average_rate == FPS
    frames = _decode_rgb(dst)
    assert abs(len(frames) - src["n_frames"]) <= 1
    assert sorted(frames) == list(range(len(frames)))   # every frame once, in order
    for i, rgb in frames.items():
        sec = i // FPS
        base = np.asarray(src["colors"][sec], float)
        left = center_color(rgb[:, : W // 2])
        right = center_color(rgb[:, W // 2:])
        assert np.abs(right - base).max() < 8, (i, right, base)   # mask off: unchanged
        if sec in (0, 2):
            expected = 0.55 * base + 0.45 * np.array([255, 0, 64])
            assert np.abs(left - expected).max() < 8, (i, left, expected)
            assert left[0] - left[1] > base[0] - base[1] + 20     # redder than the source
        else:
            assert np.abs(left - base).max() < 8, (i, left, base)


def test_overlay_audio_survives(src, overlay):
    dst, _ = overlay
    with av.open(str(dst)) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "aac" and a.rate == src["sample_rate"]
        assert a.duration * a.time_base == pytest.approx(SECONDS, abs=0.1)
    x, rate = _decode_mono(dst)
    assert len(x) / rate == pytest.approx(SECONDS, abs=0.1)
    for sec in (1, 3):
        part = x[int((sec + 0.1) * rate): int((sec + 0.9) * rate)]
        assert _peak_hz(part, rate) == pytest.approx(src["tones"][sec], abs=5)


def test_overlay_interleaves_audio_and_video(overlay):
    dst, _ = overlay
    with av.open(str(dst)) as c:
        order = sorted((p.pos, p.stream.type) for p in c.demux() if p.pos is not None and p.pos >= 0)
    switches = sum(1 for a, b in zip(order, order[1:]) if a[1] != b[1])
    assert switches >= 2 * int(SECONDS)   # chunks alternate through the file


def test_overlay_silent_source_writes_video_only(tmp_path):
    info = make_silent_video(tmp_path / "silent.mp4", seconds=2, size=(W, H))
    with OverlayWriter(info["path"], tmp_path / "o.mp4") as w:
        w.add_second(0, _left_half())
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert len(c.streams.audio) == 0
        assert c.streams.video[0].frames == info["n_frames"]


def test_overlay_odd_size_and_pcm_audio(tmp_path):
    # 161x97 yuv444p H.264 + PCM in Matroska: padded to even, PCM -> AAC.
    path = tmp_path / "odd.mkv"
    rate = 8000
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=10)
        vs.width, vs.height, vs.pix_fmt = 161, 97, "yuv444p"
        as_ = out.add_stream("pcm_s16le", rate=rate, layout="mono")
        tone = (0.5 * 32767 * np.sin(2 * np.pi * 500 * np.arange(2 * rate) / rate)).astype(np.int16)
        for i in range(20):
            f = av.VideoFrame.from_ndarray(np.full((97, 161, 3), (30, 200, 40), np.uint8), format="rgb24")
            f.pts, f.time_base = i, Fraction(1, 10)
            for p in vs.encode(f):
                out.mux(p)
            af = av.AudioFrame.from_ndarray(tone[None, i * 800:(i + 1) * 800], format="s16", layout="mono")
            af.sample_rate, af.pts, af.time_base = rate, i * 800, Fraction(1, rate)
            for p in as_.encode(af):
                out.mux(p)
        for s in (vs, as_):
            for p in s.encode():
                out.mux(p)
    dst = tmp_path / "odd_overlay.mp4"
    with OverlayWriter(path, dst) as w:
        w.add_second(1, np.ones((97, 161), bool))
    with av.open(str(dst)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (162, 98)
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 20
    assert frames[5][48, 80, 0] < 60 and frames[15][48, 80, 0] > 110   # only second 1 tinted
    x, r = _decode_mono(dst)
    assert len(x) / r == pytest.approx(2.0, abs=0.1)
    assert _peak_hz(x[r // 2: 3 * r // 2], r) == pytest.approx(500, abs=5)


def test_overlay_error_in_with_block_leaves_nothing(src, tmp_path):
    with pytest.raises(KeyError):
        with OverlayWriter(src["path"], tmp_path / "o.mp4") as w:
            w.add_second(0, _left_half())
            raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []


def test_overlay_abort_and_bad_masks(src, tmp_path):
    w = OverlayWriter(src["path"], tmp_path / "o.mp4")
    w.add_second(1, _left_half())
    with pytest.raises(ValueError):
        w.add_second(1, _left_half())            # seconds must increase
    with pytest.raises(ShapeError):
        w.add_second(2, np.zeros((H + 1, W), bool))
    w.abort()
    assert list(tmp_path.iterdir()) == []
    assert w.close() is None
    with pytest.raises(RuntimeError):
        w.add_second(3, _left_half())


def test_overlay_unreadable_source(tmp_path):
    bad = make_garbage_file(tmp_path / "bad.mp4")
    with pytest.raises(MediaError, match="bad.mp4"):
        OverlayWriter(bad, tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()
