"""avs-batch on the session's local Ray: a job killed mid-way (SIGKILL of its driver) resumes and completes with
avs-run's masks, broken videos land in the failures file with their reason, and a second run does nothing."""

from __future__ import annotations

import functools
import http.server
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from avs_engine.runtime import rle

from .conftest import BROKEN, GOOD, env_with_repo

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def http_url(scale_videos):
    """One good video served over HTTP on 127.0.0.1 (a URL source: fetched to a temporary file by the decode task)."""
    folder = scale_videos["gen02"].parent

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/gen02.mp4"
    server.shutdown()


@pytest.fixture(scope="module")
def job(ray_cluster, scale_videos, http_url, demo_spec, tmp_path_factory):
    """A job started as a separate driver (avs-batch --address), SIGKILLed once its first videos are committed,
    then the same job resumed in this process. Returns what each step saw."""
    from avs_engine.scale.job import BatchConfig, run_batch
    from avs_engine.runtime.outputs import OutputDir
    from avs_engine.runtime.inputs import expand_inputs

    folder = scale_videos["gen00"].parent
    out_dir = tmp_path_factory.mktemp("batch") / "out"
    args = [str(folder), http_url]
    cmd = [sys.executable, "-m", "avs_engine.cli.batch", *args, "--out", str(out_dir), "--address", ray_cluster,
           "--videos-per-batch", "1", "--threads", "1", "-q"]
    proc = subprocess.Popen(cmd, env=env_with_repo(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    done_at_kill = set()
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done_at_kill = OutputDir(out_dir).done_ids()
            if done_at_kill:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert done_at_kill, f"the first job committed nothing in 120 s; its stderr: {err.decode()[-2000:]}"
    staged = [p.name for p in out_dir.iterdir() if ".partial-" in p.name]

    sources = expand_inputs(args, job=True).videos
    # max_frames: the frames of several videos share model calls (the CLI's CPU default runs clip by clip)
    cfg = BatchConfig(out_dir=str(out_dir), runner=demo_spec, img_size=128, max_frames=12,
                      plan_options={"videos_per_batch": 4})
    resumed = run_batch(sources, cfg, progress=False)
    return {"out": out_dir, "done_at_kill": done_at_kill, "staged_at_kill": staged, "resumed": resumed,
            "sources": sources, "args": args}


def test_killed_job_left_only_complete_videos_and_the_resume_finished_the_rest(job):
    n_inputs = len(GOOD) + len(BROKEN) + 1
    r = job["resumed"]["videos"]
    assert r["inputs"] == n_inputs
    # A writer task in flight when the driver died may still commit its video (a complete one) before Ray reaps it.
    assert r["skipped_done"] >= len(job["done_at_kill"]) >= 1
    assert r["done"] + r["skipped_done"] == len(GOOD) + 1  # the good files and the URL
    assert r["failed"] + r["skipped_failed"] == len(BROKEN)
    assert r["staging_removed"] >= 0 and not [p for p in job["out"].iterdir() if ".partial-" in p.name]
    assert job["resumed"]["operators"] == ["FromItems", "Map(decode_video)", "MapBatches(RosteredInferenceActor)",
                                           "Map(write_video)"]  # decoding is not fused into the actors
    assert job["resumed"]["video_s_per_s"] > 0 and "image_encoder" in job["resumed"]["stages_s"]


def test_masks_equal_avs_run_for_every_good_video(job, scale_videos, avs_run_masks):
    by_source = {s.source: s.video_id for s in job["sources"]}
    expected = {**{str(scale_videos[n]): n for n in GOOD}, job["args"][1]: "gen02"}  # the URL is gen02's bytes
    for source, name in expected.items():
        folder = job["out"] / by_source[source]
        doc = json.loads((folder / "result.json").read_text())
        assert doc["video"] == source and doc["n_seconds"] == GOOD[name][0]
        stored = json.loads((folder / "masks.rle.json").read_text())
        assert stored["size"] == [doc["height"], doc["width"]]
        masks = [rle.decode(s) for s in stored["seconds"]]
        assert len(masks) == len(avs_run_masks[name])
        assert all(np.array_equal(a, b) for a, b in zip(masks, avs_run_masks[name])), source
        assert [s["bbox"] is None for s in doc["seconds"]] == [not m.any() for m in masks]


def test_broken_videos_are_in_the_failures_file_with_their_reason(job, scale_videos):
    lines = (job["out"] / "failures.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted(r["source"] for r in records) == sorted(str(scale_videos[n]) for n in BROKEN)
    for r in records:
        name = Path(r["source"]).stem
        assert r["stage"] == "decode" and BROKEN[name] in r["error"] and "\n" not in r["error"], r
        assert not (job["out"] / r["video_id"]).exists()


def test_second_run_does_nothing(job):
    from avs_engine.cli.batch import main

    before = {p.name: p.stat().st_mtime_ns for p in job["out"].iterdir() if not p.name.startswith(".")
              and p.name not in ("summary.json",)}
    t0 = time.perf_counter()
    r = CliRunner().invoke(main, [*job["args"], "--out", str(job["out"]), "--json", "-q"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["videos"]["done"] == summary["videos"]["failed"] == 0
    assert summary["videos"]["skipped_done"] == len(GOOD) + 1 and summary["videos"]["skipped_failed"] == len(BROKEN)
    assert summary["plan"] is None and time.perf_counter() - t0 < 30  # no Ray job started
    after = {p.name: p.stat().st_mtime_ns for p in job["out"].iterdir() if p.name in before}
    assert after == before
