"""The media layer on the files users have: every class of awkward input, generated here.

For each file: ``probe()``, ``iter_clips()`` and ``OverlayWriter`` either work
(one clip second per whole second, at the displayed size; an overlay with the
source's duration and audio) or raise exactly one one-line MediaError naming
the file and the cause. Files with 8 audio channels are handled in a child
process, so that a crash in the decoder fails a test instead of pytest.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from avs_engine.errors import MediaError, NoAudioError
from avs_engine.io.audio import read_audio_16k
from avs_engine.io.clips import iter_clips
from avs_engine.io.frames import frame_index, n_seconds
from avs_engine.io.logmel import log_mel_spectrogram, mel_matrix, window_examples
from avs_engine.io.preprocess import cv2_resize_bilinear
from avs_engine.io.probe import _matrix_orientation, orient, probe
from avs_engine.io.writers import OverlayWriter
from tests.media_factory import (
    _mdat_span,
    center_color,
    corrupt_copy,
    default_tones,
    garbled_brand_copy,
    make_empty_audio_track,
    make_raw_h264,
    make_video,
    read_frame_index,
    truncated_copy,
)

ROOT = Path(__file__).resolve().parents[2]
SR = 16000

# name -> (builder(path), what the file is). Sizes are small: the corpus builds in seconds.
CORPUS = {
    "stereo_44k.mp4": lambda p: make_video(p, seconds=3),
    "mono_8k.mkv": lambda p: make_video(p, seconds=3, channels=1, sample_rate=8000),
    "surround51_48k.mp4": lambda p: make_video(p, seconds=3, channels=6, sample_rate=48000),
    "ntsc_mono_48k.mp4": lambda p: make_video(p, seconds=3, fps=29.97, channels=1, sample_rate=48000),
    "fps12.5.mkv": lambda p: make_video(p, seconds=3, fps=12.5),
    "vp9_opus.webm": lambda p: make_video(p, seconds=3, fps=24),
    "ch8_aac.mp4": lambda p: make_video(p, seconds=3, channels=8, sample_rate=48000),
    "ch8_pcm.mkv": lambda p: make_video(p, seconds=3, channels=8, sample_rate=48000, audio_codec="pcm_s16le"),
    "mjpeg_repeated_pts.mkv": lambda p: make_video(p, seconds=3, video_codec="mjpeg", repeat_pts=(10, 11, 40)),
    "rot90.mp4": lambda p: make_video(p, seconds=3, rotate_cw=90),
    "rot270.mp4": lambda p: make_video(p, seconds=2, rotate_cw=270),
    "rot180.mp4": lambda p: make_video(p, seconds=2, rotate_cw=180),
    "rot90_tag.mkv": lambda p: make_video(p, seconds=2, rotate_cw=90, rotate_as_tag=True),
    "pcm192k.mkv": lambda p: make_video(p, seconds=3, sample_rate=192000, audio_codec="pcm_s24le"),
    "raw.h264": lambda p: make_raw_h264(p, seconds=4),
    "empty_audio.mkv": lambda p: make_empty_audio_track(p, seconds=3),
}
# Damaged copies of a 10 s faststart MP4 (index before the data, as streamed files are).
DAMAGED = {
    "corrupt.mp4": lambda src, p: corrupt_copy(src, p, at=(0.3, 0.45, 0.6, 0.75)),
    "truncated30.mp4": lambda src, p: truncated_copy(src, p, 0.3),
    "truncated70.mp4": lambda src, p: truncated_copy(src, p, 0.7),
    "garbled_brand.mp4": lambda src, p: garbled_brand_copy(src, p),
}
EIGHT_CHANNELS = ("ch8_aac.mp4", "ch8_pcm.mkv")
NO_AUDIO = ("raw.h264", "empty_audio.mkv")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    files = {}
    for name, build in CORPUS.items():
        build(d / name)
        files[name] = d / name
    src = d / "faststart10.mp4"
    make_video(src, seconds=10, faststart=True)
    files["faststart10.mp4"] = src
    for name, damage in DAMAGED.items():
        damage(src, d / name)
        files[name] = d / name
    # Not playable at all: a plain MP4 cut before its index, a faststart one cut inside its index,
    # and one cut right after the index (no complete packet).
    plain = d / "plain10.mp4"
    make_video(plain, seconds=10)
    truncated_copy(plain, d / "no_index.mp4", 0.5)
    truncated_copy(src, d / "cut_in_index.mp4", 0.02)
    start, _ = _mdat_span(src.read_bytes())
    truncated_copy(src, d / "no_packets.mp4", (start + 16) / src.stat().st_size)
    for name in ("no_index.mp4", "cut_in_index.mp4", "no_packets.mp4"):
        files[name] = d / name
    return files


def _displayed_index(rgb, info) -> int:
    """The frame index written in the bit strip of a frame shown as ``info`` says (turned back first)."""
    stored = rgb
    if info.mirror:
        stored = stored[:, ::-1]
    stored = np.rot90(stored, info.rotation // 90)   # undo a clockwise turn
    return read_frame_index(np.ascontiguousarray(stored))


def _overlay(path, info, dst):
    """Overlay with the left half of every second tinted; returns the writer."""
    mask = np.zeros((info.height, info.width), bool)
    mask[:, : info.width // 2] = True
    with OverlayWriter(path, dst, info=info) as w:
        for s in range(n_seconds(info)):
            w.add_second(s, mask)
    return w


def _peak_hz(x, rate=SR):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)]


def _stream_seconds(stream) -> float:
    if stream.duration is not None:
        return float(stream.duration * stream.time_base)
    return 0.0


# --------------------------------------------------------------------------- files that must work

WORKING = [n for n in CORPUS if n not in EIGHT_CHANNELS] + ["corrupt.mp4", "truncated30.mp4", "truncated70.mp4",
                                                            "garbled_brand.mp4"]


@pytest.mark.parametrize("name", WORKING)
def test_probe_clips_overlay(corpus, name, tmp_path):
    path = corpus[name]
    info = probe(path)
    n = n_seconds(info)
    assert n >= 1 and info.width > 0 and info.height > 0
    clips = list(iter_clips(path, 5, allow_silent=True, info=info))
    seconds = [s for c in clips for s in c.window.new_seconds]
    assert seconds == list(range(n)) == list(range(int(info.duration_s + 1e-6) if not info.truncated else n))
    for c in clips:
        assert c.frames.shape[1:] == (info.height, info.width, 3)
        assert np.isfinite(c.log_mel).all() and c.silent == (not info.has_audio)
        for t, sec in enumerate(c.window.seconds):
            if name != "mjpeg_repeated_pts.mkv":   # (its repeated frames shift the strip by one)
                assert _displayed_index(c.frames[t], info) == frame_index(sec, info.fps), (name, sec)

    dst = tmp_path / "overlay.mp4"
    w = _overlay(path, info, dst)
    with av.open(str(dst)) as out:
        vs = out.streams.video[0]
        assert (vs.width, vs.height) == (info.width + info.width % 2, info.height + info.height % 2)
        frames = [f for f in out.decode(vs)]
        assert all(f.rotation == 0 for f in frames)   # written upright, no display matrix
        pts = [f.pts for f in frames]
        assert all(b > a for a, b in zip(pts, pts[1:]))
        video_s = len(frames) / info.fps
        assert video_s == pytest.approx(info.duration_s, abs=0.15)
        if info.has_audio:
            a = out.streams.audio[0]
            assert _stream_seconds(a) == pytest.approx(info.duration_s, abs=0.15)
        else:
            assert len(out.streams.audio) == 0
    assert w.frames_written == len(frames)


@pytest.mark.parametrize("name", ["stereo_44k.mp4", "mono_8k.mkv", "surround51_48k.mp4", "ntsc_mono_48k.mp4",
                                  "vp9_opus.webm", "pcm192k.mkv", "truncated70.mp4"])
def test_audio_tones_in_clips_and_overlay(corpus, name, tmp_path):
    # Second l carries a tone of 300 + 100 l Hz: in the 16 kHz track and in the overlay's audio.
    path = corpus[name]
    info = probe(path)
    x = read_audio_16k(path)
    tones = default_tones(10)
    for sec in range(n_seconds(info)):
        part = x[sec * SR + 1500:(sec + 1) * SR - 1500]
        assert _peak_hz(part) == pytest.approx(tones[sec], abs=3), (name, sec)
    _overlay(path, info, tmp_path / "o.mp4")
    y = read_audio_16k(tmp_path / "o.mp4")
    for sec in range(n_seconds(info)):
        part = y[sec * SR + 1500:(sec + 1) * SR - 1500]
        assert _peak_hz(part) == pytest.approx(tones[sec], abs=3), (name, sec)


# --------------------------------------------------------------------------- one test per defect

def _child(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (a crash there fails the test, not pytest); its last stdout line is JSON."""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"child exited with {r.returncode}\n{r.stderr[-2000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", EIGHT_CHANNELS)
def test_eight_channels_in_a_child_process(corpus, name, tmp_path):
    code = f"""
import json, numpy as np
from avs_engine.io.probe import probe
from avs_engine.io.audio import read_audio_16k
from avs_engine.io.clips import iter_clips
from avs_engine.io.writers import OverlayWriter
path, dst = {str(corpus[name])!r}, {str(tmp_path / "o.mp4")!r}
info = probe(path)
x = read_audio_16k(path)
peaks = []
for s in range(3):
    part = x[s * 16000 + 1500:(s + 1) * 16000 - 1500]
    spec = np.abs(np.fft.rfft(part * np.hanning(len(part))))
    peaks.append(float(np.argmax(spec) * 16000 / len(part)))
rms = float(np.sqrt(np.mean(x[2000:-2000].astype(np.float64) ** 2)))
clips = list(iter_clips(path, 5, info=info))
with OverlayWriter(path, dst, info=info) as w:
    for s in range(3):
        w.add_second(s, np.ones((info.height, info.width), bool))
y = read_audio_16k(dst)
import av
with av.open(dst) as c:
    a = c.streams.audio[0]
    out = dict(codec=a.codec_context.name, channels=a.channels, seconds=float(a.duration * a.time_base))
print(json.dumps(dict(channels=info.audio_channels, peaks=peaks, rms=rms, n=len(x),
                      clips=[list(c.frames.shape) for c in clips], mode=w.audio_mode, out=out, out_n=len(y))))
"""
    got = _child(code)
    assert got["channels"] == 8
    assert got["peaks"] == pytest.approx([300, 400, 500], abs=3)
    assert abs(got["n"] - 3 * SR) < 1100
    if name.endswith(".mkv"):   # PCM: exact level; all 8 channels carry the tone, so their mean does too
        assert got["rms"] == pytest.approx(0.5 / math.sqrt(2), rel=0.01)
    assert got["clips"] == [[3, 96, 160, 3]]
    assert got["mode"] == ("copy" if name.endswith(".mp4") else "aac")
    assert got["out"]["codec"] == "aac" and got["out"]["seconds"] == pytest.approx(3.0, abs=0.1)
    assert abs(got["out_n"] - 3 * SR) < 1100


def test_repeated_timestamps_overlay(corpus, tmp_path):
    path = corpus["mjpeg_repeated_pts.mkv"]
    with av.open(str(path)) as c:
        src_pts = [p.pts for p in c.demux(video=0) if p.size]
    assert len(src_pts) - len(set(src_pts)) == 3   # the file really repeats timestamps
    info = probe(path)
    w = _overlay(path, info, tmp_path / "o.mp4")
    assert w.frames_written == len(src_pts)
    with av.open(str(tmp_path / "o.mp4")) as c:
        pts = [p.pts for p in c.demux(video=0) if p.size]
    assert sorted(pts) == sorted(set(pts)) and len(pts) == len(src_pts)


@pytest.mark.parametrize("name, rotation, shown", [
    ("rot90.mp4", 90, (160, 96)), ("rot270.mp4", 270, (160, 96)), ("rot180.mp4", 180, (96, 160)),
    ("rot90_tag.mkv", 90, (160, 96)), ("stereo_44k.mp4", 0, (96, 160)),
])
def test_rotation_read_and_applied(corpus, name, rotation, shown, tmp_path):
    path = corpus[name]
    info = probe(path)
    assert info.rotation == rotation and not info.mirror
    assert (info.height, info.width) == shown and (info.stored_width, info.stored_height) == (160, 96)
    clip = next(iter_clips(path, 5, info=info))
    frame = clip.frames[0]
    # The stored frame's white corner marker (top-left) is where the display puts it.
    corner = {0: (0, 0), 90: (0, -1), 180: (-1, -1), 270: (-1, 0)}[rotation]
    y = 2 if corner[0] == 0 else info.height - 3
    x = 2 if corner[1] == 0 else info.width - 3
    assert frame[y, x].min() > 200
    # The overlay plays like the source: upright frames of the displayed size, left half tinted.
    _overlay(path, info, tmp_path / "o.mp4")
    with av.open(str(tmp_path / "o.mp4")) as c:
        f = next(c.decode(video=0))
        assert f.rotation == 0 and (f.height, f.width) == shown
        rgb = f.to_ndarray(format="rgb24")
    assert int(rgb[y, x].astype(int).sum()) > 450   # the marker, white (tinted or not), still in that corner
    base = center_color(clip.frames[0])
    left = center_color(rgb[:, : info.width // 2])
    right = center_color(rgb[:, info.width // 2:])
    expected = 0.55 * base + 0.45 * np.array([255, 0, 64])
    assert np.abs(right - base).max() < 8 and np.abs(left - expected).max() < 8


def test_raw_h264_counts_its_frames(corpus):
    path = corpus["raw.h264"]
    info = probe(path)
    assert info.n_frames == 100 and info.duration_s == pytest.approx(4.0) and not info.has_audio
    with pytest.raises(NoAudioError) as ei:
        iter_clips(path, 5)
    assert str(ei.value) == f"{path}: no audio track (use --allow-silent to run with silence)"
    assert len(list(iter_clips(path, 5, allow_silent=True))[0].window.new_seconds) == 4


def test_audio_track_without_packets_is_no_audio(corpus):
    path = corpus["empty_audio.mkv"]
    with av.open(str(path)) as c:
        assert len(c.streams.audio) == 1   # the track is there, empty
    info = probe(path)
    assert not info.has_audio and info.audio_rate == 0
    with pytest.raises(NoAudioError):
        iter_clips(path, 5, info=info)
    with pytest.raises(NoAudioError):
        read_audio_16k(path)


@pytest.mark.parametrize("name, full_seconds", [("truncated30.mp4", (2, 3)), ("truncated70.mp4", (6, 7))])
def test_truncated_file_ends_where_its_data_ends(corpus, name, full_seconds):
    path = corpus[name]
    info = probe(path)
    assert info.truncated and info.audio_end_s is not None
    assert full_seconds[0] <= info.duration_s < full_seconds[1]
    assert n_seconds(info) in range(full_seconds[0] - 1, full_seconds[1])
    assert any(s.startswith("file is truncated: decoded ") and s.endswith(" of 10.0 s") for s in info.decode_notes)
    # Every predicted second has its own frame and audio up to its end, silence only for a small gap.
    last = n_seconds(info) - 1
    assert frame_index(last, info.fps) < info.n_frames
    assert info.audio_end_s > last + 1 - 0.5
    clips = list(iter_clips(path, 5, info=info))
    assert clips[-1].window.end == n_seconds(info)


def test_damaged_packets_are_skipped_and_reported(corpus):
    path = corpus["corrupt.mp4"]
    info = probe(path)
    assert not info.truncated and n_seconds(info) == 10
    clips = list(iter_clips(path, 5, info=info))
    assert [s for c in clips for s in c.window.new_seconds] == list(range(10))
    notes = " | ".join(info.decode_notes)
    assert "damaged" in notes or "decoded with errors" in notes, notes
    x = read_audio_16k(path)
    assert abs(len(x) - 10 * SR) < 1100   # the timeline holds: skipped audio became silence


def test_garbled_metadata_opens(corpus):
    path = corpus["garbled_brand.mp4"]
    assert b"\x96" in path.read_bytes()[8:12]
    info = probe(path)
    assert n_seconds(info) == 10 and info.has_audio


@pytest.mark.parametrize("name, words", [
    ("no_index.mp4", "truncated"), ("cut_in_index.mp4", "truncated"), ("no_packets.mp4", "truncated"),
])
def test_unplayable_files_one_line(corpus, name, words):
    path = corpus[name]
    with pytest.raises(MediaError) as ei:
        info = probe(path)
        list(iter_clips(path, 5, allow_silent=True, info=info))
    msg = str(ei.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg and words in msg, msg


def test_overlay_resamples_audio_the_encoder_refuses(corpus, tmp_path):
    path = corpus["pcm192k.mkv"]
    info = probe(path)
    assert info.audio_rate == 192000
    w = _overlay(path, info, tmp_path / "o.mp4")
    assert w.audio_mode == "aac"
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert c.streams.audio[0].codec_context.name == "aac" and c.streams.audio[0].rate == 48000


def test_overlay_copies_aac_into_mp4(corpus, tmp_path):
    path = corpus["stereo_44k.mp4"]
    w = _overlay(path, probe(path), tmp_path / "o.mp4")
    assert w.audio_mode == "copy"
    with av.open(str(path)) as a, av.open(str(tmp_path / "o.mp4")) as b:
        src = [bytes(p) for p in a.demux(audio=0) if p.size]
        out = [bytes(p) for p in b.demux(audio=0) if p.size]
    assert out == src   # the very same packets


def test_overlay_refusing_audio_is_a_clear_error(corpus, tmp_path, monkeypatch):
    # An output container that takes neither the copied codec nor AAC: one MediaError line.
    from avs_engine.io import writers

    monkeypatch.setattr(writers, "_AAC_RATES", set())
    monkeypatch.setitem(writers._COPY_AUDIO, "mp4", set())
    real_add = av.container.OutputContainer.add_stream

    def no_aac(self, codec, *a, **k):
        if codec == "aac":
            raise av.error.ArgumentError(22, "encoder refused")
        return real_add(self, codec, *a, **k)

    monkeypatch.setattr(av.container.OutputContainer, "add_stream", no_aac)
    path = corpus["mono_8k.mkv"]
    with pytest.raises(MediaError) as ei:
        OverlayWriter(path, tmp_path / "o.mp4")
    msg = str(ei.value)
    assert msg.startswith(f"{path}: overlay cannot write the audio") and "\n" not in msg
    assert list(tmp_path.iterdir()) == []


def test_overlay_scales_down_above_max_pixels(corpus, tmp_path):
    path = corpus["rot90.mp4"]
    info = probe(path)
    w = OverlayWriter(path, tmp_path / "o.mp4", info=info, max_pixels=48 * 80)
    assert w.size == (48, 80)
    mask = np.zeros((info.height, info.width), bool)
    mask[:, : info.width // 2] = True
    w.add_second(0, mask)
    w.close()
    with av.open(str(tmp_path / "o.mp4")) as c:
        f = next(c.decode(video=0))
        assert (f.width, f.height) == (48, 80)
        rgb = f.to_ndarray(format="rgb24")
    base = np.array([220, 30, 30])   # second 0's colour
    expected = 0.55 * base + 0.45 * np.array([255, 0, 64])
    assert np.abs(center_color(rgb[:, :24]) - expected).max() < 8
    assert np.abs(center_color(rgb[:, 24:]) - base).max() < 8


# --------------------------------------------------------------------------- orientation and audio layout units

def test_display_matrix_orientations():
    img = np.arange(6).reshape(2, 3)
    cases = {
        (65536, 0, 0, 65536): (0, False, img),
        (0, 65536, -65536, 0): (90, False, np.rot90(img, -1)),    # phones' portrait matrix
        (0, -65536, 65536, 0): (270, False, np.rot90(img, 1)),
        (-65536, 0, 0, -65536): (180, False, img[::-1, ::-1]),
        (-65536, 0, 0, 65536): (0, True, img[:, ::-1]),            # hflip
        (65536, 0, 0, -65536): (180, True, img[::-1]),             # vflip
        (0, 65536, 65536, 0): (90, True, img.T),                   # transpose
        (0, -65536, -65536, 0): (270, True, img[::-1, ::-1].T),    # anti-transpose
    }
    for (a, b, c, d), (rot, mirror, shown) in cases.items():
        m = [a, b, 0, c, d, 0, 0, 0, 1 << 30]
        assert _matrix_orientation(m) == (rot, mirror), (a, b, c, d)
        np.testing.assert_array_equal(orient(img, rot, mirror), shown)
    assert _matrix_orientation([46341, 46341, 0, -46341, 46341, 0, 0, 0, 1 << 30]) is None   # 45 degrees


def test_window_examples_layouts():
    rng = np.random.default_rng(3)
    x = rng.standard_normal(12 * SR).astype(np.float32)
    np.testing.assert_array_equal(window_examples(x[: 5 * SR], 5), __import__(
        "avs_engine.io.logmel", fromlist=["vggish_examples"]).vggish_examples(x[: 5 * SR], 5))
    ex = window_examples(x, 12)
    assert ex.shape == (12, 1, 96, 64)
    for l in (0, 5, 11):
        np.testing.assert_allclose(ex[l, 0], log_mel_spectrogram(x[l * SR: l * SR + 15600]), atol=1e-5)


def test_long_window_audio_stays_with_its_second(tmp_path):
    # At T = 12 each second's example holds that second's tone; back to back, example 11
    # would start at 10.56 s, mostly in second 10's tone.
    p = tmp_path / "v12.mp4"
    tones = [300 + 250 * (l % 4) for l in range(12)]
    make_video(p, seconds=12, fps=10, size=(64, 48), channels=1, sample_rate=16000, tone_hz=tones)
    clip = next(iter_clips(p, 12))
    freqs = np.arange(257) * SR / 512
    centre = (freqs[:, None] * mel_matrix()).sum(0) / mel_matrix().sum(0)   # band centres, Hz
    for l in range(12):
        band = int(np.argmax(clip.log_mel[l, 0].mean(0)))
        assert abs(centre[band] - tones[l]) < 60, (l, centre[band], tones[l])


def test_frame_size_squashes_at_decode(corpus):
    path = corpus["rot90.mp4"]
    full = next(iter_clips(path, 5)).frames
    small = next(iter_clips(path, 5, frame_size=(224, 224))).frames
    assert small.shape == (3, 224, 224, 3)
    for t in range(3):
        np.testing.assert_array_equal(small[t], cv2_resize_bilinear(full[t], (224, 224)))
    with pytest.raises(ValueError):
        iter_clips(path, 5, frame_size=(224, 224), frame_transform=lambda f: f)


# --------------------------------------------------------------------------- memory at 8K

MEMORY_CHILD = """
import json, queue, sys, threading
import numpy as np
from avs_engine.io.clips import iter_clips
from avs_engine.io.probe import probe
from avs_engine.io.writers import OverlayWriter
path, dst = sys.argv[1], sys.argv[2]
info = probe(path)
windows = queue.Queue(maxsize=2)

def source():   # clips decoded on their own thread while the overlay is written, as the runtime does
    for clip in iter_clips(path, 5, info=info, frame_size=(224, 224)):
        windows.put(clip.window)
    windows.put(None)

t = threading.Thread(target=source)
t.start()
mask = np.zeros((info.height, info.width), bool)
mask[:, : info.width // 2] = True
with OverlayWriter(path, dst, info=info) as w:
    while (win := windows.get()) is not None:
        for s in win.new_seconds:
            w.add_second(s, mask)
t.join()
# VmHWM, not getrusage: a child's ru_maxrss starts from its parent's high-water mark (Linux, across exec)
print(json.dumps({"peak_mb": int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024, "size": list(w.size)}))
"""


@pytest.mark.slow
def test_decode_and_overlay_memory_at_8k(tmp_path):
    # A 2 s 7680x4320 video: decoding its clips and writing its overlay together stay under 1.5 GB
    # (3.1 GB before frames could be squashed at decode and the encoder's look-ahead was bounded).
    src = tmp_path / "8k.mp4"
    make_video(src, seconds=2, fps=25, size=(7680, 4320))
    r = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(src), str(tmp_path / "o.mp4")], cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["size"] == [3840, 2160]
    assert got["peak_mb"] < 1500, got
