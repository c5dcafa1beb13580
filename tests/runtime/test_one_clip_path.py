"""avs-run, avs-eval and avs-bench all run the model through the runner's one clip method, and the
pipeline's three pieces (clip source, model step, writer thread) keep their promises."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from avs_engine.backends.base import Runner


@pytest.fixture
def calls(monkeypatch):
    """Counts Runner.run_clip and Runner.run calls (every backend inherits both from the base class)."""
    counts = {"run_clip": 0, "run": 0}
    run_clip, run = Runner.run_clip, Runner.run

    def counted_run_clip(self, *a, **kw):
        counts["run_clip"] += 1
        return run_clip(self, *a, **kw)

    def counted_run(self, *a, **kw):
        counts["run"] += 1
        return run(self, *a, **kw)

    monkeypatch.setattr(Runner, "run_clip", counted_run_clip)
    monkeypatch.setattr(Runner, "run", counted_run)
    return counts


def test_avs_run_uses_the_clip_method(calls, tmp_path, tiny_bundle, sample_video):
    from avs_engine.cli.run import main

    r = CliRunner().invoke(main, [str(sample_video), "--weights", str(tiny_bundle), "--backend", "torch", "-T", "5",
                                  "--project", str(tmp_path), "--quiet", "--no-overlay"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    # 6 seconds, T = 5: windows [0,5) and [1,6) -> two clips, no stage-by-stage calls
    assert calls == {"run_clip": 2, "run": 0}
    doc = json.loads((tmp_path / "run" / "clip" / "result.json").read_text())
    stages = doc["timings"]["stages"]
    for name in ("decode", "squash", "preprocess", "audio", "image_encoder", "fusion", "mask_decoder", "postprocess", "write"):
        assert stages[name]["total_s"] > 0 and stages[name]["calls"] >= 1, name
    assert stages["image_encoder"]["calls"] == 2


def test_avs_eval_uses_the_clip_method(calls, tiny_bundle):
    from avs_engine.backends.model_spec import ModelSpec
    from avs_engine.train.eval_api import run_eval

    res = run_eval(ModelSpec.choose(weights=tiny_bundle).create(), generated=3, progress=False)
    assert len(res["per_video"]) == 3
    assert calls == {"run_clip": 3, "run": 0}


def test_avs_bench_uses_the_clip_method(calls):
    from avs_engine.bench.harness import BenchSettings, run_benchmark

    # in this process, where the calls are counted (avs-bench's default runs each row in a fresh process)
    report = run_benchmark(BenchSettings(preset="tiny", T=2, runs=2, warmup=1, backends=("torch:float32",),
                                         video_size=(160, 96), peak_budget_s=0.05, fresh_process=False))
    row = report["rows"][0]
    assert row["status"] == "ok", row["status"]
    assert calls == {"run_clip": 3, "run": 0}
    assert "clip method" in row["clock"]["model_stages"]
    for name in ("audio", "image_encoder", "fusion", "mask_decoder"):
        assert row["stages"][name]["median"]["value"] > 0


def test_overlay_failure_keeps_masks_and_result(monkeypatch, tmp_path, tiny_bundle, sample_video):
    from avs_engine.cli.run import main
    from avs_engine.io import writers

    def refuse(self, second, mask):
        raise writers.MediaError("muxing refused a packet (Invalid argument)")

    monkeypatch.setattr(writers.OverlayWriter, "add_second", refuse)
    r = CliRunner().invoke(main, [str(sample_video), "--weights", str(tiny_bundle), "--backend", "torch",
                                  "--project", str(tmp_path), "--quiet"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = tmp_path / "run" / "clip"
    assert len(list((out / "masks").glob("*.png"))) == 6
    assert not (out / "overlay.mp4").exists() and not list(out.glob(".*"))
    doc = json.loads((out / "result.json").read_text())
    assert len(doc["seconds"]) == 6 and doc["outputs"]["overlay"] is None
    assert any("overlay not written" in w and "muxing refused" in w for w in doc["warnings"])
    assert "overlay not written" in r.stderr


def test_writer_error_reaches_the_caller_and_nothing_is_left(monkeypatch, tmp_path, tiny_bundle, sample_video):
    from avs_engine.backends import create_runner
    from avs_engine.runtime import Pipeline
    from avs_engine.runtime import writer as writer_mod

    def disk_full(path, mask):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer_mod, "write_mask_png", disk_full)
    with create_runner("torch", weights=tiny_bundle) as runner:
        with pytest.raises(OSError, match="No space left"):
            Pipeline(runner).run_video(sample_video, tmp_path / "run", overlay=False)
    assert list((tmp_path / "run").iterdir()) == []  # the staging folder is gone


def test_source_error_reaches_the_caller(monkeypatch, tmp_path, tiny_bundle, sample_video):
    from avs_engine.backends import create_runner
    from avs_engine.errors import MediaError
    from avs_engine.runtime import Pipeline
    from avs_engine.runtime import clip_source

    def broken(*a, **kw):
        def gen():
            raise MediaError(f"{sample_video}: video ended before second 4")
            yield

        return gen()

    monkeypatch.setattr(clip_source, "iter_clips", broken)
    with create_runner("torch", weights=tiny_bundle) as runner:
        with pytest.raises(MediaError, match="ended before second 4"):
            Pipeline(runner).run_video(sample_video, tmp_path / "run", overlay=False)
    assert list((tmp_path / "run").iterdir()) == []


def test_iter_video_equals_run_video_masks(tmp_path, tiny_bundle, sample_video):
    from PIL import Image

    from avs_engine.backends import create_runner
    from avs_engine.runtime import Pipeline

    with create_runner("torch", weights=tiny_bundle) as runner:
        p = Pipeline(runner, clip_seconds=3)
        streamed = {s.second: s.mask for s in p.iter_video(sample_video)}
        doc = p.run_video(sample_video, tmp_path / "run", overlay=False, save_logits=True)
    out = Path(doc["output_dir"])
    assert sorted(streamed) == list(range(6))
    for sec, mask in streamed.items():
        np.testing.assert_array_equal(np.asarray(Image.open(out / "masks" / f"{sec + 1:06d}.png")) > 0, mask)
        logits = np.load(out / "logits" / f"{sec + 1:06d}.npy")
        assert logits.dtype == np.float16 and logits.ndim == 2


def test_threads_are_joined(tiny_bundle, sample_video):
    import threading

    from avs_engine.backends import create_runner
    from avs_engine.runtime import Pipeline

    before = {t.name for t in threading.enumerate()}
    with create_runner("torch", weights=tiny_bundle) as runner:
        it = Pipeline(runner, clip_seconds=2).iter_video(sample_video)
        next(it)
        it.close()  # leave early: the source thread must stop and be joined
    assert not [t for t in threading.enumerate() if t.name.startswith("avs-") and t.name not in before]
