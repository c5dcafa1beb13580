"""Resource plans (no deadlock on small clusters), the output folder (atomic commit, staging clean-up,
failures file), and which videos a job still has to run."""

from __future__ import annotations

import json

import pytest

from avs_engine.scale.job import pending, summary_lines, _summary, BatchConfig
from avs_engine.backends.model_spec import ModelSpec
from avs_engine.runtime.outputs import OutputBusy, OutputDir
from avs_engine.scale.resources import ResourceError, plan_resources
from avs_engine.runtime.inputs import Input


def test_cpu_plans_leave_a_decode_task_room():
    p = plan_resources(2)
    assert (p.actors, p.actor_cpus, p.threads, p.actor_gpus) == (1, 1.0, 1, 0.0)
    assert p.actors * p.actor_cpus + p.decode_cpus <= 2
    p = plan_resources(2, actors=2)
    assert p.actor_cpus == 0.75 and p.actors * p.actor_cpus + p.decode_cpus <= 2
    p = plan_resources(16)
    assert (p.actors, p.threads, p.decode_cpus) == (4, 3, 1.0)
    with pytest.raises(ResourceError, match="wait forever"):
        plan_resources(2, actors=2, actor_cpus=1)


def test_gpu_plans_one_actor_per_gpu_and_refuse_too_many():
    p = plan_resources(32, 4, device="cuda")
    assert (p.actors, p.actor_gpus, p.actor_cpus) == (4, 1.0, 1.0)
    assert plan_resources(32, 4, device="cuda", actor_gpus=0.5).actors == 8
    assert plan_resources(2, 1, device="cpu", actor_gpus=1).actor_gpus == 1.0  # a logical GPU, CPU runner
    with pytest.raises(ResourceError, match="GPUs"):
        plan_resources(8, 1, device="cuda", actors=2)


def test_commit_is_atomic_and_idempotent(tmp_path):
    out = OutputDir(tmp_path / "out").lock()
    try:
        s = out.staging("v-1")
        (s / "result.json").write_text("{}")
        assert not out.is_done("v-1") and out.commit(s, "v-1") == out.final("v-1") and out.is_done("v-1")
        s2 = out.staging("v-1")  # a second writer of the same video: keeps the first, drops its own
        (s2 / "result.json").write_text('{"second": true}')
        assert out.commit(s2, "v-1") is None and not s2.exists()
        assert json.loads((out.final("v-1") / "result.json").read_text()) == {}
        out.staging("v-2")
        out.staging("v-3")
        assert out.clean_staging() == 2 and out.done_ids() == {"v-1"}
        (out.root / "stray").mkdir()
        s3 = out.staging("stray")
        with pytest.raises(FileExistsError, match="holds no result.json"):
            out.commit(s3, "stray")
        with pytest.raises(OutputBusy, match="another avs-batch"):
            OutputDir(tmp_path / "out").lock()
    finally:
        out.unlock()
    OutputDir(tmp_path / "out").lock().unlock()  # free again


def test_failures_file_survives_a_cut_line_and_pending_skips_done_and_failed(tmp_path):
    sources = [Input.of(f"/v/{n}.mp4") for n in "abcd"]
    a, b, c, d = (s.video_id for s in sources)
    out = OutputDir(tmp_path)
    out.append_failure({"video_id": b, "source": "/v/b.mp4", "stage": "decode", "error": "no audio track"})
    out.append_failure({"video_id": c, "source": "/v/c.mp4", "stage": "decode", "error": "corrupt"})
    with open(out.failures_path, "a") as f:
        f.write(f'{{"video_id": "{d}", "sou')  # killed mid-line
    assert set(out.read_failures()) == {b, c}
    (tmp_path / a).mkdir()
    (tmp_path / a / "result.json").write_text("{}")
    todo, n_done, n_failed, kept = pending(sources, out, retry_failed=False)
    assert [s.video_id for s in todo] == [d] and (n_done, n_failed) == (1, 2) and set(kept) == {b, c}
    todo, n_done, n_failed, kept = pending(sources, out, retry_failed=True)
    assert [s.video_id for s in todo] == [b, c, d] and n_failed == 0 and kept == {}
    assert out.read_failures() == {}  # retried: their old records are gone until they fail again


def test_summary_lines_name_rates_and_stages(tmp_path):
    cfg = BatchConfig(out_dir=str(tmp_path), runner=ModelSpec("onnxruntime", engine_dir="g"))
    s = _summary({"inputs": 3, "done": 2, "failed": 1, "skipped_done": 0, "skipped_failed": 0, "staging_removed": 0},
                 20.0, 4.0, {"decode": 0.2, "image_encoder": 1.0, "write": 0.1}, None, cfg, None, OutputDir(tmp_path))
    lines = summary_lines(s)
    assert lines[0].startswith("2 done, 1 failed, 0 skipped") and "5.00 s of video per second" in lines[1]
    assert "decode 10.0 ms, image_encoder 50.0 ms, write 5.0 ms" in lines[2] and "failures.jsonl" in lines[3]


def test_progress_lines_count_videos_and_rate(monkeypatch):
    import io

    from avs_engine.scale import job
    from avs_engine.scale.job import Progress

    # A clock that reads as a machine booted 2 s ago: the first line must not wait for the interval to pass.
    clock = iter(2.0 + 0.01 * i for i in range(100))
    monkeypatch.setattr(job.time, "perf_counter", lambda: next(clock))
    out = io.StringIO()
    p = Progress(total=3, every_s=3600, stream=out)
    p.update(True, 10.0)  # the first video prints at once
    p.update(False, 0.0)  # not time for another line yet
    p.update(True, 5.0)  # the last one always prints
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("avs-batch: 1/3 videos (1 done, 0 failed), 10 s of video in")
    assert lines[1].startswith("avs-batch: 3/3 videos (2 done, 1 failed), 15 s of video in") and "s/s" in lines[1]
    assert Progress(total=1, enabled=False, stream=out).line().startswith("avs-batch: 0/1 videos")
