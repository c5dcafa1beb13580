"""Three outputs right on valid files users have: the overlay follows a mid-stream size change, the seconds follow
the presented timeline (edit lists, a first timestamp above zero), and the overlay keeps the source's colour
description (HDR10 stays bt2020 / smpte2084 / 10-bit; a full-range MJPEG stays full range)."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from avs_engine.io.frames import iter_second_frames, n_seconds
from avs_engine.io.probe import probe
from avs_engine.io.writers import OverlayWriter
from avs_engine.runtime.results import VideoResult
from avs_engine.io.hdr import read_hdr_static
from tests.media_craft import (FULL_RANGE_601, HDR10, HDR10_STATIC, make_edit_list_mp4, make_size_change_ts, make_tagged_video,
                               stream_tags)
from tests.media_factory import frame_image, read_frame_index


def write_overlay(src, dst, seconds=None):
    info = probe(src)
    with OverlayWriter(src, dst, info=info) as w:
        for s in range(seconds if seconds is not None else n_seconds(info)):
            mask = np.zeros((info.height, info.width), bool)
            mask[: info.height // 2] = True
            w.add_second(s, mask)
    return w


def decoded_sizes(path) -> list[tuple[int, int]]:
    with av.open(str(path)) as c:
        return [(f.width, f.height) for f in c.decode(video=0)]


def test_overlay_follows_a_mid_stream_size_change(tmp_path):
    src = make_size_change_ts(tmp_path / "change.ts")["path"]
    info = probe(src)
    assert (info.width, info.height) == (320, 240) and n_seconds(info) == 4
    w = write_overlay(src, tmp_path / "overlay.mp4")
    sizes = decoded_sizes(tmp_path / "overlay.mp4")
    assert len(sizes) == 40 and set(sizes) == {(320, 240)}
    assert len(w.notes) == 1 and "changes size mid-stream" in w.notes[0] and "640x480" in w.notes[0]
    assert "broadcast" not in w.notes[0]
    # Frames after the change are the source's frames, scaled: their untinted lower half matches.
    with av.open(str(tmp_path / "overlay.mp4")) as c:
        got = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)][35]
    with av.open(str(src)) as c:
        want = [f.reformat(width=320, height=240).to_ndarray(format="rgb24") for f in c.decode(video=0)][35]
    assert np.abs(got[150:200].astype(int) - want[150:200]).mean() < 6


def test_avs_writer_reports_the_size_change_as_a_warning(tmp_path):
    from avs_engine.runtime.model_step import ClipPrediction
    from avs_engine.runtime.writer import VideoWriter
    from avs_engine.io.clips import Window

    src = make_size_change_ts(tmp_path / "change.ts")["path"]
    info = probe(src)
    result = VideoResult(path=str(src), width=info.width, height=info.height, fps=info.fps, duration_s=info.duration_s,
                         clip_seconds=4, n_seconds=4, warnings=[], silent=False)
    writer = VideoWriter(result, tmp_path / "out", 16, overlay=True, mask_format="rle")
    writer.put(ClipPrediction(Window(0, 4, (0, 1, 2, 3), False), np.random.default_rng(0).normal(size=(4, 1, 16, 16)).astype(np.float32)))
    assert writer.close() is not None
    assert [w for w in result.warnings if w.startswith("overlay: the video changes size mid-stream")], result.warnings
    assert not [w for w in result.warnings if "not written" in w]


def test_seconds_follow_an_edit_list(tmp_path):
    made = make_edit_list_mp4(tmp_path / "cut.mp4", hidden_s=0.5, shown_s=4.5, fps=10)
    info = probe(made["path"])
    assert info.duration_s == pytest.approx(4.5) and info.n_frames == 45
    assert n_seconds(info) == 4   # 4.5 s shown: frames 9, 19, 29, 39 of the presented timeline
    # Second l shows presented frame 10 l + 9, which is stored frame 5 + 10 l + 9 (5 hidden before it).
    assert [(s, read_frame_index(f)) for s, f in iter_second_frames(made["path"])] == [(0, 14), (1, 24), (2, 34), (3, 44)]


@pytest.mark.parametrize("fmt,suffix", [("mpegts", ".ts"), ("mp4", ".mp4"), ("matroska", ".mkv")])
def test_seconds_follow_a_first_timestamp_above_zero(tmp_path, fmt, suffix):
    """Both streams start 3 s into the file's clock: seconds count from the first presented frame."""
    from tests.media_craft import _audio

    path = tmp_path / f"late{suffix}"
    fps, shift = 10, 30
    with av.open(str(path), "w", format=fmt) as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 160, 96, "yuv420p"
        vs.options = {"bf": "0"}
        vs.codec_context.time_base = Fraction(1, fps)
        write_audio = _audio(out, 4.5, start_s=shift / fps)
        for i in range(45):
            frame = av.VideoFrame.from_ndarray(frame_image(i, (90, 90, 90), (160, 96)), format="rgb24").reformat(format="yuv420p")
            frame.pts, frame.time_base = i + shift, Fraction(1, fps)
            for p in vs.encode(frame):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        write_audio()
    info = probe(path)
    assert info.start_s >= 3.0 - 1e-6 and n_seconds(info) == 4
    assert [(s, read_frame_index(f)) for s, f in iter_second_frames(path)][:4] == [(0, 9), (1, 19), (2, 29), (3, 39)]


def test_overlay_keeps_hdr10_tags_and_10_bits(tmp_path):
    src = make_tagged_video(tmp_path / "hdr.mp4", "libx265", "yuv420p10le", HDR10)["path"]
    assert stream_tags(src) == {**HDR10, "pix_fmt": "yuv420p10le"}
    write_overlay(src, tmp_path / "overlay.mp4")
    assert stream_tags(tmp_path / "overlay.mp4") == {**HDR10, "pix_fmt": "yuv420p10le"}
    assert not read_hdr_static(src) and not read_hdr_static(tmp_path / "overlay.mp4")   # none given, none made up


def test_overlay_keeps_hdr10_mastering_display_and_light_level(tmp_path):
    src = make_tagged_video(tmp_path / "hdr.mp4", "libx265", "yuv420p10le", HDR10, x265_params=HDR10_STATIC)["path"]
    want = read_hdr_static(src)
    # What the source carries, read back from its decoded frames (P3-D65 primaries, 1000 cd/m², MaxCLL/MaxFALL).
    assert want.primaries == ((Fraction(17, 25), Fraction(8, 25)), (Fraction(53, 200), Fraction(69, 100)),
                              (Fraction(3, 20), Fraction(3, 50))), want
    assert want.white_point == (Fraction(15635, 50000), Fraction(16450, 50000))
    assert (want.min_luminance, want.max_luminance) == (Fraction(1, 10000), Fraction(1000))
    assert (want.max_cll, want.max_fall) == (1000, 400)
    w = write_overlay(src, tmp_path / "overlay.mp4")
    assert read_hdr_static(tmp_path / "overlay.mp4") == want
    assert w.hdr == want
    assert stream_tags(tmp_path / "overlay.mp4") == {**HDR10, "pix_fmt": "yuv420p10le"}


def test_overlay_keeps_full_range(tmp_path):
    src = make_tagged_video(tmp_path / "mjpeg.mkv", "mjpeg", "yuvj420p", FULL_RANGE_601, fmt="matroska")["path"]
    write_overlay(src, tmp_path / "overlay.mp4")
    got = stream_tags(tmp_path / "overlay.mp4")
    assert got["color_range"] == 2 and got["colorspace"] == 6 and got["color_primaries"] == 6 and got["color_trc"] == 6
    # The untinted half keeps the source's code values (no range squeeze): compare decoded luma.
    with av.open(str(src)) as a, av.open(str(tmp_path / "overlay.mp4")) as b:
        ya = next(a.decode(video=0)).to_ndarray()[:96].astype(int)   # yuvj420p: Y plane rows first
        yb = next(b.decode(video=0)).to_ndarray()[:96].astype(int)
    assert abs(ya[60:90].mean() - yb[60:90].mean()) < 3
