"""The book of an avs-serve app's live jobs, shared by all its HTTP replicas: a named Ray actor.

A live job runs on its own actor (:class:`~avs_engine.scale.live_streams.StreamJob`, named
``avs-stream-<id>``); any replica finds it by that name. What no actor name can hold (which ids exist, their
sources, a finished job's last status, how many run) lives here, in one detached actor per app
(:func:`directory_for`), so that ``POST /v1/streams`` on one replica and ``GET``/``DELETE`` on another see the
same jobs, and the limit on streams at once holds for the whole app. Detached: it outlives the replica that
created it (a replica restart does not lose the book); ``serve_app.stop`` ends it, and so does the end of
the Ray cluster.
"""

from __future__ import annotations

import ray

FINISHED_KEPT = 100   # finished jobs the book still lists


@ray.remote(num_cpus=0)
class StreamDirectory:
    """Entries ``{"id", "source", "started", "created", "final"}`` (``created``: its actor was made; ``final``:
    the last status once the job is done)."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}

    def reserve(self, stream_id: str, source: str, started: float, max_running: int) -> bool:
        """Enter a new job unless ``max_running`` jobs already run (then False, nothing entered)."""
        if sum(1 for j in self.jobs.values() if j["final"] is None) >= max_running:
            return False
        self.jobs[stream_id] = {"id": stream_id, "source": source, "started": started, "created": False, "final": None}
        done = [k for k, j in self.jobs.items() if j["final"] is not None]
        for k in done[:-FINISHED_KEPT]:
            del self.jobs[k]
        return True

    def created(self, stream_id: str) -> None:
        """The job's named actor exists (from now on, failing to find it means it died)."""
        if stream_id in self.jobs:
            self.jobs[stream_id]["created"] = True

    def entry(self, stream_id: str) -> dict | None:
        return self.jobs.get(stream_id)

    def entries(self) -> list[dict]:
        return list(self.jobs.values())

    def finish(self, stream_id: str, status: dict) -> dict | None:
        """Keep a finished job's status (the first one told wins: two replicas may both see it end); returns it."""
        job = self.jobs.get(stream_id)
        if job is None:
            return None
        if job["final"] is None:
            job["final"] = status
        return job["final"]


def directory_name(app: str) -> str:
    return f"avs-streams-{app}"


def directory_for(app: str):
    """The app's :class:`StreamDirectory` (created by the first replica that asks, found by the others)."""
    try:
        return StreamDirectory.options(name=directory_name(app), lifetime="detached", get_if_exists=True).remote()
    except ValueError:   # another replica created it between the lookup and the creation
        return ray.get_actor(directory_name(app))


__all__ = ["StreamDirectory", "directory_for", "directory_name", "FINISHED_KEPT"]
