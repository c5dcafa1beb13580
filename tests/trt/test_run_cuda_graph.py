"""avs-run on the tensorrt backend (fake TensorRT, host memory for CUDA): --cuda-graph is captured once
per clip length and replayed for every clip, and a graph is never replayed after the shapes changed."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from avs_engine.backends import create_runner
from avs_engine.checks.compare import random_clip
from tests.trt.fake_tensorrt import HostMemory

H100 = ("NVIDIA H100 80GB HBM3", "9.0")


def test_avs_run_captures_and_replays(engines, fake_trt, monkeypatch, tmp_path, sample_video):
    from avs_engine.cli.run import main

    mem = HostMemory().install(monkeypatch, gpu=H100)
    r = CliRunner().invoke(main, [str(sample_video), "--backend", "tensorrt", "--engine-dir", str(engines), "--cuda-graph",
                                  "-T", "2", "--project", str(tmp_path), "--quiet", "--no-overlay"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    # 6 s at T = 2: three clips of the same length -> one capture (after one uncaptured run), three replays
    assert (mem.graph_captures, mem.graph_launches) == (1, 3)
    doc = json.loads((tmp_path / "run" / "clip" / "result.json").read_text())
    assert len(doc["seconds"]) == 6 and "+cuda-graph" in doc["model"]["runner"]
    assert doc["timings"]["stages"]["model"]["calls"] == 3  # one graph replay per clip, timed as one stage


def test_graph_not_replayed_after_a_shape_change(engines, fake_trt, monkeypatch):
    mem = HostMemory().install(monkeypatch, gpu=H100)
    with create_runner("tensorrt", engine_dir=engines, cuda_graph=True) as runner:
        c3, c2 = random_clip(runner.config, T=3, seed=1), random_clip(runner.config, T=2, seed=2)
        first = runner.run_clip(c3["image"], c3["log_mel"])
        runner.run_clip(c2["image"], c2["log_mel"])
        again = runner.run_clip(c3["image"], c3["log_mel"])  # 3, 2, 3: the T = 3 graph is recaptured, not replayed
        assert mem.graph_captures == 3
        np.testing.assert_array_equal(first, again)
        runner.run("audio", {"log_mel": c2["log_mel"]})  # a stage call at another T drops the graphs too
        runner.run_clip(c3["image"], c3["log_mel"])
        assert mem.graph_captures == 4


def test_per_stage_events_without_graph(engines, fake_trt, monkeypatch):
    mem = HostMemory().install(monkeypatch, gpu=H100)
    with create_runner("tensorrt", engine_dir=engines) as runner:
        clip = random_clip(runner.config, T=2, seed=3)
        clock = runner.stage_clock()
        runner.run_clip(clip["image"], clip["log_mel"], clock)
        seconds = clock.seconds()
    assert list(seconds) == ["audio", "image_encoder", "fusion", "mask_decoder"]
    assert all(v >= 0 for v in seconds.values()) and mem.events_recorded == 8
