"""avs-run live mode with the camera and the microphone on separate inputs (--audio-source): two MPEG-TS
streams on 127.0.0.1 at real-time pace (one video-only, one audio-only, cut from one clip) and two lavfi
inputs. Where the content is deterministic the masks equal those of one input carrying both.

Real-time tests on a shared machine: they assert on counts and mask equality, not on latencies."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest

from avs_engine.runtime import rle
from tests.cli.test_run_live import CLIP_S, TsServer, _avs_run, _check_equal, _lines, causal_masks, ts_clip  # noqa: F401

VIDEO = "testsrc=size=160x96:rate=25"
AUDIO = "sine=frequency=440:sample_rate=16000"


def _one_kind(src: Path, dst: Path, kind: str) -> Path:
    """``src``'s video or audio packets alone, copied (timestamps kept) into an MPEG-TS file ``dst``."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format="mpegts") as o:
        s = i.streams.video[0] if kind == "video" else i.streams.audio[0]
        out = o.add_stream_from_template(s)
        for p in i.demux(s):
            if p.dts is None:
                continue
            p.stream = out
            o.mux(p)
    return dst


@pytest.fixture(scope="module")
def split_clip(ts_clip):
    return _one_kind(ts_clip, ts_clip.with_name("video.ts"), "video"), _one_kind(ts_clip, ts_clip.with_name("audio.ts"), "audio")


def _run_two_streams(split_clip, tmp_path, *extra):
    video, audio = split_clip
    vs, as_ = TsServer(video, CLIP_S), TsServer(audio, CLIP_S)
    p = _avs_run([vs.url, "--audio-source", as_.url, "--json", "--threads", "1", "-T", "5", "--project", str(tmp_path),
                  *extra])
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    return _lines(out), json.loads((tmp_path / "live" / "stream" / "result.json").read_text()), err


def test_video_and_audio_streams_on_one_clock_equal_the_single_files_causal_masks(split_clip, causal_masks, tmp_path):
    lines, summary, err = _run_two_streams(split_clip, tmp_path, "--audio-sync", "timestamps")
    assert summary["audio_source"].startswith("tcp://127.0.0.1:") and summary["stream"]["audio_sync"] == "timestamps"
    assert summary["stopped"] == "end of stream"
    assert summary["seconds_received"] == len(causal_masks) == 6
    assert summary["masks"] == len(lines) and summary["masks"] + summary["dropped"] == 6
    assert _check_equal(lines, causal_masks) >= 3
    assert "audio from tcp://127.0.0.1:" in err


def test_video_and_audio_streams_synced_at_their_starts(split_clip, tmp_path):
    """The default: each stream counted from its own first timestamp; a mask for every second."""
    lines, summary, _ = _run_two_streams(split_clip, tmp_path)
    assert summary["stream"]["audio_sync"] == "start"
    assert summary["seconds_received"] == 6 and summary["masks"] + summary["dropped"] == 6
    assert [d["second"] for d in lines] == sorted(d["second"] for d in lines)


def test_two_lavfi_inputs_equal_one_lavfi_input_with_both(tmp_path):
    """Deterministic test sources: the masks of camera + microphone as two inputs are those of one graph."""
    from click.testing import CliRunner

    from avs_engine.cli.run import main

    def masks(name, args):
        r = CliRunner().invoke(main, [*args, "--format", "lavfi", "--realtime", "--duration", "3", "--threads", "1",
                                      "--project", str(tmp_path), "--name", name], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        lines = _lines((tmp_path / name / "stream" / "masks.jsonl").read_text())
        summary = json.loads((tmp_path / name / "stream" / "result.json").read_text())
        assert summary["masks"] + summary["dropped"] == 3
        return {d["second"]: rle.decode(d["rle"]) for d in lines if d["dropped"] == 0}

    one = masks("one", [f"{VIDEO}[out0];{AUDIO}[out1]"])
    two = masks("two", [VIDEO, "--audio-source", AUDIO, "--audio-format", "lavfi"])
    both = sorted(set(one) & set(two))
    assert len(both) >= 2
    for t in both:
        assert (one[t] != two[t]).mean() <= 1e-3, t


def test_audio_source_refusals(tmp_path):
    from click.testing import CliRunner

    from avs_engine.cli.run import main

    base = [VIDEO, "--format", "lavfi", "--duration", "2", "--threads", "1", "--project", str(tmp_path)]
    r = CliRunner().invoke(main, [*base, "--audio-source", VIDEO, "--audio-format", "lavfi"])
    assert r.exit_code == 2 and r.output.strip().endswith(f"{VIDEO}: the audio source has no audio stream"), r.output
    r = CliRunner().invoke(main, [*base, "--audio-source", "tcp://127.0.0.1:9"])
    assert r.exit_code == 2 and "tcp://127.0.0.1:9: cannot open the audio source" in r.output
    r = CliRunner().invoke(main, [*base, "--audio-source", AUDIO, "--audio-format", "lavfi", "--audio-input-option", "x"])
    assert r.exit_code == 2 and "--audio-input-option" in r.output
    r = CliRunner().invoke(main, ["a.mp4", "--audio-source", "mic.wav"])
    assert r.exit_code == 2 and "live mode only" in r.output
    assert not (tmp_path / "live").exists()
