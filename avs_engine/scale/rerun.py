"""The batch job's second pass: videos lost with a worker that died, run again one at a time, every wait bounded.

The first pass is a Ray Data pipeline; when an inference actor dies more often than its retries allow, Ray Data drops
that batch and the driver finds its videos missing. Here each of them goes through the same three steps
(``stages.decode_video``, ``stages.InferenceActor``, ``stages.write_video``) as plain Ray tasks and one actor of
this pass's own, so that nothing waits on anything unbounded:

- the actor is not restarted by Ray (``max_restarts=0``): a death is an error at once, and the video's next try
  gets a fresh actor, ``actor_retries`` times at most;
- every wait (the decode task, the actor starting and answering, the write task) ends after ``try_timeout_s``:
  an actor that never comes up (its CPUs or GPU held elsewhere, starved of CPU time on a loaded machine) or a call
  that never returns is killed, and the video is recorded as failed with the reason, not waited for.

Yields one summary row per video, as ``write_video`` returns them (``ok=False`` and stage ``worker`` for a video
that was lost again).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

from ..errors import reason
from ..runtime.inputs import Input
from .stages import InferenceActor, _column, decode_video, write_video


def _as_batch(row: dict) -> dict:
    """One row -> a numpy batch of one (what Ray Data hands ``InferenceActor``)."""
    return {k: _column([v]) for k, v in row.items()}


def _first_row(batch: dict) -> dict:
    return {k: v[0] for k, v in batch.items()}


def lost_row(s: Input, error: str) -> dict:
    return {"video_id": s.video_id, "source": s.source, "ok": False, "stage": "worker", "error": error,
            "duration_s": 0.0}


def died_alone(tries: int) -> str:
    """The failure reason of a video whose worker died on every try of the second pass."""
    times = {1: "once", 2: "twice"}.get(tries, f"{tries} times")
    return (f"lost with a worker that died, then its own worker died {times} when it ran alone (killed, out of "
            f"memory, or a crash in a native library); not retried further")


def rerun_alone(lost: Sequence[Input], cfg, plan, try_timeout_s: float) -> Iterator[dict]:
    """Run each video of ``lost`` again alone (see the module docstring); ``cfg``: the job's ``BatchConfig``,
    ``plan``: its ``ResourcePlan``."""
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError, RayError

    decode = ray.remote(decode_video).options(num_cpus=plan.decode_cpus, memory=plan.decode_memory_mb << 20)
    write = ray.remote(write_video).options(num_cpus=plan.write_cpus)
    actor_class = ray.remote(InferenceActor).options(num_cpus=plan.actor_cpus, num_gpus=plan.actor_gpus or None,
                                                     max_restarts=0, max_task_retries=0)
    tries = max(0, int(cfg.actor_retries)) + 1
    actor = None

    def task_result(ref):
        """The task's answer, or GetTimeoutError after ``try_timeout_s`` (the task cancelled: it holds CPUs)."""
        try:
            return ray.get(ref, timeout=try_timeout_s)
        except GetTimeoutError:
            with contextlib.suppress(Exception):   # (it may have finished meanwhile)
                ray.cancel(ref, force=True)
            raise

    def drop_actor() -> None:
        nonlocal actor
        if actor is not None:
            ray.kill(actor, no_restart=True)
            actor = None

    def one(s: Input) -> dict:
        nonlocal actor
        try:
            decoded = task_result(decode.remote({"video_id": s.video_id, "source": s.source}, img_size=cfg.img_size,
                                                clip_seconds=cfg.clip_seconds, resize=cfg.resize,
                                                allow_silent=cfg.allow_silent, max_bytes=cfg.fetch_max_bytes))
        except GetTimeoutError:
            return lost_row(s, f"its decode task gave no answer in {try_timeout_s:g} s; not retried further")
        for _ in range(tries):
            if actor is None:
                actor = actor_class.remote(cfg.runner, cfg.max_frames)
            try:
                inferred = _first_row(ray.get(actor.__call__.remote(_as_batch(decoded)), timeout=try_timeout_s))
                break
            except RayActorError:
                actor = None   # dead: the next try (if any) starts another
            except GetTimeoutError:
                drop_actor()   # never came up, or never answered: a slot held forever helps nobody
                return lost_row(s, f"its inference actor gave no answer in {try_timeout_s:g} s (not started: its "
                                   f"CPUs or GPU held elsewhere, or starved of CPU time; or stuck); not retried further")
        else:
            return lost_row(s, died_alone(tries))
        try:
            return dict(task_result(write.remote(inferred, out_dir=str(cfg.out_dir), mask_format=cfg.mask_format,
                                                 overlay=cfg.overlay, fetch_max_bytes=cfg.fetch_max_bytes)))
        except GetTimeoutError:
            return lost_row(s, f"its write task gave no answer in {try_timeout_s:g} s; not retried further")

    try:
        for s in lost:
            try:
                yield one(s)
            except RayError as e:   # a task's worker lost beyond Ray's own retries, a lost node ...
                yield lost_row(s, f"lost again in its second pass ({reason(e)})")
    finally:
        drop_actor()


__all__ = ["died_alone", "lost_row", "rerun_alone"]
