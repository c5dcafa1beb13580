"""The batch job's driver: which videos are left, the Ray Data pipeline over them, progress and the summary.

::

    sources ─► decode tasks (CPU) ─► inference actor pool ─► writer tasks (CPU) ─► driver
               clip source          run_clips, batched      VideoWriter + rename    failures.jsonl,
                                                                                    progress, summary

Resumable and idempotent: videos whose ``result.json`` is committed are
skipped, and so are videos in the failures file (unless ``retry_failed``);
a job killed at any point leaves only complete video folders (and staging
folders, removed by the next job), so running it again picks up where it
stopped.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import dataclasses
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..atomic import write_json_atomic
from ..backends.model_spec import ModelSpec
from ..runtime.outputs import SUMMARY_NAME, OutputDir

STATS_NAME = "ray_stats.txt"  # Ray Data's own per-operator statistics of the last run
from .resources import ResourcePlan, plan_resources
from ..runtime.inputs import Input
from .pass_actors import RosteredInferenceActor, end_pass, new_roster
from .rerun import died_alone, lost_row, rerun_alone
from .stages import STAGE_ORDER, decode_video, write_video


@dataclass
class BatchConfig:
    """What a batch job does. ``plan_options``: keyword arguments of :func:`plan_resources` (actors,
    actor_cpus, actor_gpus, threads, decode_cpus, write_cpus, videos_per_batch). ``actor_retries``: how many
    times a batch of videos whose inference actor died (killed, out of memory, a crash in a native library)
    is run again on the restarted actor, in each of the job's two passes (see :func:`run_batch`).
    ``rerun_timeout_s``: the longest wait on any step of one try in the second pass (decode, the inference actor
    starting and answering, write); a video that reaches it is recorded as failed, not waited for."""

    out_dir: str
    runner: ModelSpec
    img_size: int = 224
    clip_seconds: int = 5
    resize: str = "avsbench"
    allow_silent: bool = False
    mask_format: str = "rle"
    overlay: bool = False
    max_frames: int | None = None
    retry_failed: bool = False
    fetch_max_bytes: int | None = None
    actor_retries: int = 2
    rerun_timeout_s: float = 1800.0
    plan_options: dict = field(default_factory=dict)


def ray_context(address: str | None = None, *, num_cpus: int | None = None, num_gpus: int | None = None,
                object_store_mb: int | None = None, quiet: bool = True):
    """Join the cluster at ``address`` (``auto``: the one this node belongs to), or start Ray on this machine;
    an already initialised Ray (a test session, a notebook) is used as it is."""
    import ray

    if not ray.is_initialized():
        kwargs: dict = {"include_dashboard": False, "log_to_driver": not quiet}
        if address:
            kwargs["address"] = address
        else:
            kwargs.update(num_cpus=num_cpus, num_gpus=num_gpus)
            if not os.environ.get("RAY_ADDRESS"):   # (with it, ray.init joins that cluster: its settings stand)
                # Ray starts its workers at niceness 15: on a machine busy with anything else they get a few percent
                # of a core, and a job whose actor is restarting after a crash seems to wait forever. The job's
                # workers are the job: they run at the driver's own priority (`nice avs-batch ...` lowers it all).
                kwargs["_system_config"] = {"worker_niceness": 0}
            if object_store_mb:
                kwargs["object_store_memory"] = int(object_store_mb) << 20
        ray.init(**kwargs)
    if quiet:  # the job prints its own progress; Ray Data's warnings and errors still show
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
    return ray


def pending(sources: Sequence[Input], out: OutputDir, retry_failed: bool) -> tuple[list[Input], int, int, dict]:
    """(to run, skipped as done, skipped as failed, the failure records kept).

    The failures file is rewritten first: records of videos now done, or about to be retried, are dropped."""
    done = out.done_ids()
    failures = out.read_failures()
    todo, n_done, n_failed = [], 0, 0
    for s in sources:
        if s.video_id in done:
            n_done += 1
        elif s.video_id in failures and not retry_failed:
            n_failed += 1
        else:
            todo.append(s)
    retried = {s.video_id for s in todo}
    kept = {k: v for k, v in failures.items() if k not in done and k not in retried}
    if kept != failures:
        out.write_failures(kept.values())
    return todo, n_done, n_failed, kept


class Progress:
    """A line on stderr every ``every_s`` seconds and at the end: videos, failures, seconds of video per second."""

    def __init__(self, total: int, enabled: bool = True, every_s: float = 5.0, stream=None) -> None:
        self.total, self.enabled, self.every_s = total, enabled, every_s
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        # None = never printed: perf_counter's origin is arbitrary (boot on Linux), so no number means "long ago".
        self.last: float | None = None
        self.done = self.failed = 0
        self.video_s = 0.0

    def update(self, ok: bool, video_s: float) -> None:
        if ok:
            self.done += 1
            self.video_s += video_s
        else:
            self.failed += 1
        now = time.perf_counter()
        due = self.last is None or now - self.last >= self.every_s
        if self.enabled and (due or self.done + self.failed == self.total):
            self.last = now
            print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        wall = time.perf_counter() - self.t0
        n = self.done + self.failed
        rate = self.video_s / wall if wall > 0 else 0.0
        eta = (self.total - n) * wall / n if n else float("nan")
        return (f"avs-batch: {n}/{self.total} videos ({self.done} done, {self.failed} failed), "
                f"{self.video_s:.0f} s of video in {wall:.1f} s = {rate:.2f} s/s, ETA {eta:.0f} s")


def build_dataset(todo: Sequence[Input], cfg: BatchConfig, plan: ResourcePlan, roster=None):
    """The Ray Data pipeline over ``todo`` (lazy: nothing runs until it is iterated).

    An inference actor that dies is restarted by Ray and its batch run again, ``cfg.actor_retries`` times at
    most; a batch lost beyond that is dropped, and :func:`run_batch` runs its videos again alone. ``roster``: a
    ``pass_actors`` roster the actors sign in on (the driver ends them with it)."""
    import ray

    items = [{"video_id": s.video_id, "source": s.source} for s in todo]
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 10_000)))
    # The memory request also keeps Ray Data from fusing the decode step into the actors (their resources differ).
    ds = ds.map(decode_video, num_cpus=plan.decode_cpus, memory=plan.decode_memory_mb << 20,
                fn_kwargs={"img_size": cfg.img_size, "clip_seconds": cfg.clip_seconds, "resize": cfg.resize,
                           "allow_silent": cfg.allow_silent, "max_bytes": cfg.fetch_max_bytes})
    pool = ray.data.ActorPoolStrategy(size=plan.actors)
    ds = ds.map_batches(RosteredInferenceActor,
                        fn_constructor_kwargs={"spec": cfg.runner, "max_frames": cfg.max_frames, "roster": roster},
                        batch_size=plan.videos_per_batch, batch_format="numpy", compute=pool,
                        num_cpus=plan.actor_cpus, num_gpus=plan.actor_gpus or None,
                        max_restarts=-1, max_task_retries=max(0, int(cfg.actor_retries)))
    ds = ds.map(write_video, num_cpus=plan.write_cpus,
                fn_kwargs={"out_dir": str(cfg.out_dir), "mask_format": cfg.mask_format, "overlay": cfg.overlay,
                           "fetch_max_bytes": cfg.fetch_max_bytes})
    return ds


def run_batch(sources: Sequence[Input], cfg: BatchConfig, *, progress: bool = True, address: str | None = None,
              ray_kwargs: dict | None = None, on_row: Callable[[dict], None] | None = None) -> dict:
    """Run the job; returns the summary (also written to ``out_dir/summary.json``).

    ``address``: a Ray cluster to join (None: start Ray here, or use the one already initialised).
    ``on_row``: called with each video's summary row as it finishes.
    """
    t0 = time.perf_counter()
    out = OutputDir(cfg.out_dir).lock()
    restore_errored = None
    try:
        cleaned = out.clean_staging()
        todo, skipped_done, skipped_failed, _ = pending(sources, out, cfg.retry_failed)
        counts = {"inputs": len(sources), "done": 0, "failed": 0, "skipped_done": skipped_done,
                  "skipped_failed": skipped_failed, "staging_removed": cleaned, "rerun_alone": 0}
        stages: dict[str, float] = {}
        video_s, plan, ray_info, operators = 0.0, None, None, []
        phases: dict[str, float] = {}
        prog = Progress(len(todo), enabled=progress)
        if todo:
            t1 = time.perf_counter()
            ray = ray_context(address, **(ray_kwargs or {}))
            phases["ray_start_s"] = time.perf_counter() - t1
            res = ray.cluster_resources()
            plan = plan_resources(res.get("CPU", 1.0), res.get("GPU", 0.0), device=cfg.runner.device_name,
                                  **cfg.plan_options)
            ray_info = {"version": ray.__version__, "cluster_cpus": res.get("CPU", 0.0),
                        "cluster_gpus": res.get("GPU", 0.0), "nodes": len(ray.nodes())}
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False  # the job prints its own progress lines
            ctx.print_on_execution_start = False
            if progress:
                print(f"avs-batch: {len(todo)} to run, {skipped_done} already done, {skipped_failed} failed before "
                      f"(--retry-failed to run them again); {plan.actors} actor(s) x {plan.actor_cpus:g} CPU"
                      f"{f' x {plan.actor_gpus:g} GPU' if plan.actor_gpus else ''}", file=sys.stderr, flush=True)
            if cfg.runner.threads is None and plan.threads:
                cfg = dataclasses.replace(cfg, runner=dataclasses.replace(cfg.runner, threads=plan.threads))
            # A batch whose worker died more often than its retries allow is dropped by Ray Data (not the job):
            # its videos are missing from the output, run again alone, and recorded as failed if lost again.
            restore_errored = (ctx, ctx.max_errored_blocks)
            ctx.max_errored_blocks = -1
            finished: set[str] = set()
            t2 = time.perf_counter()

            def consume(rows) -> None:
                nonlocal video_s
                for row in rows:
                    row = dict(row)
                    if row["video_id"] in finished:   # a retried batch answered twice: count each video once
                        continue
                    finished.add(str(row["video_id"]))
                    phases.setdefault("first_result_s", time.perf_counter() - t2)
                    ok = bool(row["ok"])
                    if ok:
                        counts["done"] += 1
                        video_s += float(row["duration_s"])
                        for k, v in json.loads(row["timings"]).items():
                            stages[k] = stages.get(k, 0.0) + v
                    else:
                        counts["failed"] += 1
                        out.append_failure({"video_id": row["video_id"], "source": row["source"],
                                            "stage": row["stage"], "error": row["error"]})
                    prog.update(ok, float(row["duration_s"]))
                    if on_row is not None:
                        on_row(row)

            roster = new_roster()
            ds = build_dataset(todo, cfg, plan, roster)
            try:
                consume(ds.iter_rows())
            finally:
                # Ray Data lets go of its actors by dropping their handles; one that died and was restarting when
                # the pass ended can outlive that, holding its CPUs or GPU from the second pass (or the next job):
                # end them all here.
                end_pass(roster)
            stats = ds.stats()
            lost = [s for s in todo if s.video_id not in finished]
            if lost:
                counts["rerun_alone"] = len(lost)
                if progress:
                    print(f"avs-batch: {len(lost)} video(s) lost with a worker that died; running them again one "
                          f"at a time", file=sys.stderr, flush=True)
                consume(rerun_alone(lost, cfg, plan, float(cfg.rerun_timeout_s)))
            for s in todo:   # none left unless the second pass stopped early: each input still ends once
                if s.video_id in finished:
                    continue
                row = lost_row(s, died_alone(max(0, int(cfg.actor_retries)) + 1))
                counts["failed"] += 1
                finished.add(s.video_id)
                out.append_failure({k: row[k] for k in ("video_id", "source", "stage", "error")})
                prog.update(False, 0.0)
                if on_row is not None:
                    on_row(row)
            phases["pipeline_s"] = time.perf_counter() - t2
            (out.root / STATS_NAME).write_text(stats + "\n", encoding="utf-8")
            operators = re.findall(r"^Operator \d+ (.+?): ", stats, flags=re.M)
        wall = time.perf_counter() - t0
        summary = _summary(counts, video_s, wall, stages, plan, cfg, ray_info, out)
        summary["operators"] = operators
        summary["phases"] = {k: round(v, 3) for k, v in phases.items()}
        if phases.get("pipeline_s"):
            summary["pipeline_video_s_per_s"] = round(video_s / phases["pipeline_s"], 4)
        write_json_atomic(out.root / SUMMARY_NAME, summary)
        return summary
    finally:
        if restore_errored is not None:
            restore_errored[0].max_errored_blocks = restore_errored[1]
        out.unlock()


def _summary(counts, video_s, wall, stages, plan, cfg, ray_info, out) -> dict:
    order = [k for k in STAGE_ORDER if k in stages] + [k for k in stages if k not in STAGE_ORDER]
    busy = sum(stages.values()) or 1.0
    return {
        "videos": counts,
        "seconds_of_video": round(video_s, 3),
        "wall_s": round(wall, 3),
        "video_s_per_s": round(video_s / wall, 4) if wall > 0 else None,
        "stages_s": {k: round(stages[k], 4) for k in order},
        "stages_share": {k: round(stages[k] / busy, 4) for k in order},
        "stages_note": "seconds summed over the videos done in this run, each where it ran (decode and writer "
                       "tasks, inference actors): they overlap, so they add up to more than the wall time",
        "plan": plan.to_dict() if plan else None,
        "ray": ray_info,
        "runner": {"backend": cfg.runner.backend, "device": cfg.runner.device_name, "engine_dir": cfg.runner.engine_dir},
        "mask_format": cfg.mask_format,
        "failures_file": str(out.failures_path),
    }


def summary_lines(s: dict) -> list[str]:
    """The closing summary for a person."""
    v = s["videos"]
    lines = [f"{v['done']} done, {v['failed']} failed, {v['skipped_done'] + v['skipped_failed']} skipped "
             f"({v['skipped_done']} done before, {v['skipped_failed']} failed before) of {v['inputs']} video(s) "
             f"in {s['wall_s']:.1f} s"]
    if v["done"]:
        lines.append(f"{s['seconds_of_video']:.0f} s of video: {s['video_s_per_s']:.2f} s of video per second of wall time")
        ph = s.get("phases") or {}
        if "pipeline_s" in ph:
            lines.append(f"Ray start {ph.get('ray_start_s', 0.0):.1f} s, first video after {ph.get('first_result_s', 0.0):.1f} s, "
                         f"pipeline {ph['pipeline_s']:.1f} s ({s['pipeline_video_s_per_s']:.2f} s of video per second)")
        n = max(s["seconds_of_video"], 1e-9)
        lines.append("per second of video: " + ", ".join(f"{k} {t * 1e3 / n:.1f} ms" for k, t in s["stages_s"].items()))
    if v["failed"] or v["skipped_failed"]:
        lines.append(f"failures (one line each): {s['failures_file']}")
    return lines


__all__ = ["BatchConfig", "Progress", "build_dataset", "pending", "ray_context", "run_batch", "summary_lines"]
