"""The streaming report: built from avs-run's JSON and the child's memory, flatness stated, schema valid."""

from __future__ import annotations

import json

import pytest

from avs_engine.bench.report import to_markdown
from avs_engine.bench.schema import validate_report
from avs_engine.bench.streaming import _flatness, _video_entry


def _fake_run(seconds: int, rss_mib: list[float], wall: float) -> tuple[dict, dict]:
    info = {"seconds": seconds, "n_frames": seconds * 25, "bytes": 1 << 20}
    doc = {"videos": [{"seconds": [{}] * seconds, "timings": {
        "total_s": wall - 2, "realtime_factor": seconds / (wall - 2),
        "stages": {"decode": {"total_s": 0.1 * seconds, "calls": 3}, "image_encoder": {"total_s": 0.5 * seconds, "calls": 3}},
    }}]}
    res = {"exit_code": 0, "wall_s": wall, "peak_rss_bytes": int(max(rss_mib) * 2**20), "stderr": "",
           "samples": [(0.2 * i, int(r * 2**20)) for i, r in enumerate(rss_mib)], "stdout": json.dumps(doc)}
    return info, res


def test_entries_and_flatness():
    short = _video_entry("10 s", *_fake_run(10, [100, 400, 500, 510], 6.0))
    long_ = _video_entry("10 min", *_fake_run(600, [100, 400] + [505] * 40 + [512] * 40, 150.0))
    assert short["realtime_factor"]["value"] == pytest.approx(10 / 4.0)
    assert long_["peak_rss"]["value"] == pytest.approx(512.0)
    assert long_["stages_per_video_second"]["image_encoder"]["value"] == pytest.approx(500.0)
    flat = _flatness([short, long_])
    assert flat["peak_ratio_long_to_short"]["value"] == pytest.approx(512 / 510, rel=1e-3)
    assert flat["long_run_growth"]["value"] == pytest.approx(7.0)
    failed = _video_entry("1 s", {"seconds": 1}, {"exit_code": 1, "stderr": "error: x.mp4: no audio track\n"})
    assert failed["status"] == "failed: avs-run exit code 1: error: x.mp4: no audio track"
    assert _flatness([failed, short])["statement"].startswith("not measured")


@pytest.mark.slow
def test_streaming_end_to_end():
    """Two real avs-run processes on generated 3 s and 8 s videos (about a minute on 2 busy cores)."""
    from avs_engine.bench.streaming import run_streaming

    doc = run_streaming("tiny", T=2, durations=(3, 8), video_size=(160, 96), overlay=False, command="test")
    validate_report(doc)
    assert [v["status"] for v in doc["videos"]] == ["ok", "ok"]
    assert doc["videos"][1]["n_frames"] == 200 and doc["videos"][1]["peak_rss"]["value"] > 50
    assert "Peak RSS" in to_markdown(doc)


def test_cli_streaming(tmp_path, monkeypatch):
    """avs-bench --streaming: parses, calls run_streaming, writes the three files."""
    import avs_engine.bench.streaming as streaming
    from click.testing import CliRunner

    from avs_engine.bench.machine import machine_info, now_utc
    from avs_engine.cli.bench import main

    seen = {}

    def fake(preset, T, durations, **kw):
        seen.update(preset=preset, T=T, durations=durations, **kw)
        videos = [_video_entry("10 s", *_fake_run(10, [100, 400, 500, 510], 6.0)),
                  _video_entry("10 min", *_fake_run(600, [100, 400] + [505] * 40, 150.0))]
        return streaming.streaming_report(videos, {"preset": preset, "T": T, "device": "cpu", "precision": "float32",
                                                   "fps": {"value": 25, "unit": "frames/s"}, "video_size": "320x180",
                                                   "weights": "random", "avs_run_args": []},
                                          now_utc(), machine_info(), kw["command"])

    monkeypatch.setattr(streaming, "run_streaming", fake)
    r = CliRunner().invoke(main, ["--streaming", "--long-seconds", "180", "--out", str(tmp_path / "s"), "-q"])
    assert r.exit_code == 0, r.output
    assert seen["durations"] == (10, 180) and seen["video_size"] == (320, 180)
    assert seen["command"].startswith("avs-bench --config tiny --clip-seconds 5 --device cpu --overlay --streaming")
    assert "10 min: real-time factor" in r.output and "Peak RSS" in r.output
    validate_report(json.loads((tmp_path / "s.json").read_text()))
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 10 min | 15000 |" in (tmp_path / "s.md").read_text()
