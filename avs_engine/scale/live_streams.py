"""Live jobs for avs-serve: one Ray actor per stream, running the runtime's live run; the ingress lists,
follows (server-sent events) and stops them.

:class:`StreamJob` (a Ray actor) builds its own runner from the model spec, opens the stream and runs
:func:`avs_engine.runtime.live_job.run_live` on a thread, keeping the last :data:`EVENTS_KEPT` mask lines
(a client that falls further behind skips ahead: memory stays flat). :class:`StreamRegistry` (one per HTTP
replica, all of them sharing the app's book of jobs, :mod:`avs_engine.scale.stream_directory`) starts jobs
for allow-listed sources, answers their status, and reports a job whose actor died (``state: "failed"``, a
one-line reason) instead of losing it.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import deque

import ray

from ..errors import reason
from .stream_directory import directory_for
from .url_check import UrlRefused, allowed_url

EVENTS_KEPT = 256
_NAMING_S = 10.0   # a job booked this recently may not have its named actor yet (another replica is creating it)
STATES_DONE = ("ended", "failed", "stopped")


def stream_allowed(source: str, allow: tuple[str, ...]) -> bool:
    """Whether stream URL ``source`` is under one of the URL prefixes in ``allow``, by ``url_check.allowed_url``
    as ``source=`` URLs are (scheme, host, port and normalised path segments; no user information):
    ``tcp://127.0.0.1`` allows any port of that host, ``tcp://127.0.0.1:9000`` exactly that one."""
    try:
        allowed_url(source, allow)
    except UrlRefused:
        return False
    return True


@ray.remote
class StreamJob:
    """One live stream on its own actor: ``spec`` (a ModelSpec) builds the runner; ``options``: ``clip_seconds``,
    ``resize``, ``allow_silent``, ``duration_s``, ``mask_fps``, ``realtime``, ``input_format``, ``audio_source``
    and ``audio_sync`` (the audio from a second stream, as ``avs-run --audio-source``)."""

    def __init__(self, stream_id: str, spec, source: str, options: dict) -> None:
        self.id, self.source, self.options = stream_id, source, dict(options)
        self.state, self.reason, self.summary = "starting", None, None
        self.events: deque = deque(maxlen=EVENTS_KEPT)
        self.seq = 0
        self.last: dict | None = None
        self.dropped = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(spec,), name=f"avs-stream-{stream_id}", daemon=True)
        self._thread.start()

    def _run(self, spec) -> None:
        from ..runtime.live_job import open_stream, run_live

        o = self.options
        try:
            runner = spec.create().activate()
            reader = open_stream(self.source, input_format=o.get("input_format"), realtime=bool(o.get("realtime")),
                                 allow_silent=bool(o.get("allow_silent")), mask_fps=int(o.get("mask_fps", 1)),
                                 audio_source=o.get("audio_source"), audio_sync=o.get("audio_sync") or "start")
            self.state = "running"
            out = run_live(runner, reader, clip_seconds=int(o.get("clip_seconds", 5)), resize=o.get("resize", "avsbench"),
                           duration_s=o.get("duration_s"), mask_fps=int(o.get("mask_fps", 1)), on_mask=self._on_mask,
                           stop=self._stop)
            self.summary = out.summary
            self.reason = out.summary["stopped"]
            self.state = ("stopped" if self.reason == "stopped on request" else
                          "failed" if self.reason.startswith("source failed") else "ended")
        except Exception as e:
            self.reason = f"{self.source}: {reason(e, self.source)}"
            self.state = "failed"

    def _on_mask(self, doc: dict) -> None:
        with self._lock:
            self.seq += 1
            self.events.append((self.seq, doc))
            self.last = {k: v for k, v in doc.items() if k != "rle"}
            self.dropped = doc["dropped"]

    def status(self) -> dict:
        with self._lock:
            last = self.last
        lat = (self.summary or {}).get("latency")
        return {"id": self.id, "source": self.source, "state": self.state, "reason": self.reason,
                "masks": self.seq, "dropped": self.dropped, "last": last,
                "latency_s": last["latency_s"] if last else None, "latency": lat}

    def events_after(self, seq: int) -> tuple[list, dict]:
        """The kept mask lines after ``seq`` (``[(seq, doc)]``) and the job's status."""
        with self._lock:
            new = [(s, d) for s, d in self.events if s > seq]
        return new, self.status()

    def stop(self, wait_s: float = 10.0) -> dict:
        self._stop.set()
        self._thread.join(wait_s)
        return self.status()


class StreamRegistry:
    """One HTTP replica's door to the app's live jobs: ``start``, ``known``, ``status``, ``listing``, ``events``
    (SSE lines), ``stop``. The jobs themselves are shared by every replica: each job's actor is found by its
    name (``avs-stream-<id>``) and the book of jobs is the app's :class:`StreamDirectory` (``app``: the Serve
    application's name), so a job started through one replica is followed, listed and stopped through any."""

    def __init__(self, spec, allow: tuple[str, ...], defaults: dict, cpus: float = 0.5, max_streams: int = 16,
                 app: str = "avs") -> None:
        self.spec, self.allow, self.defaults = spec, tuple(allow), dict(defaults)
        self.cpus, self.max_streams = float(cpus), int(max_streams)
        self.book = directory_for(app)
        self._actors: dict[str, object] = {}   # id -> actor handle, as this replica found them

    def _actor(self, stream_id: str):
        """The job's actor handle (looked up by name once); raises ValueError when no such actor lives."""
        if stream_id not in self._actors:
            self._actors[stream_id] = ray.get_actor(job_actor_name(stream_id))
        return self._actors[stream_id]

    async def start(self, body: dict) -> tuple[int, dict]:
        """(HTTP status, document) for ``POST /v1/streams`` with ``body`` ``{"source", "duration_s", "mask_fps", ...}``."""
        source = body.get("source")
        if not isinstance(source, str) or not source:
            return 400, {"error": "give the stream as JSON: {\"source\": \"rtsp://...\"}"}
        if not stream_allowed(source, self.allow):
            return 403, {"error": f"{source}: not under any --allow-source URL prefix of this server"}
        audio = body.get("audio_source")
        if audio is not None and (not isinstance(audio, str) or not stream_allowed(audio, self.allow)):
            return 403, {"error": f"{audio}: not under any --allow-source URL prefix of this server"}
        if body.get("audio_sync", "start") not in ("start", "timestamps"):
            return 400, {"error": f"audio_sync: expected start or timestamps, got {body['audio_sync']!r}"}
        options = dict(self.defaults, audio_source=audio, audio_sync=body.get("audio_sync", "start"))
        for key, kind in (("duration_s", float), ("mask_fps", int), ("clip_seconds", int), ("realtime", bool)):
            if body.get(key) is not None:
                try:
                    options[key] = kind(body[key])
                except (TypeError, ValueError):
                    return 400, {"error": f"{key}: expected {kind.__name__}, got {body[key]!r}"}
        stream_id = uuid.uuid4().hex[:12]
        if not await self.book.reserve.remote(stream_id, source, time.time(), self.max_streams):
            return 429, {"error": f"this server runs at most {self.max_streams} live streams at once"}
        try:
            self._actors[stream_id] = StreamJob.options(num_cpus=self.cpus, name=job_actor_name(stream_id)).remote(
                stream_id, self.spec, source, options)
            await self.book.created.remote(stream_id)
        except Exception as e:   # entered in the book: reported as failed, not lost
            await self._died(stream_id, e)
        return 201, {"id": stream_id, "source": source, "events": f"/v1/streams/{stream_id}/events"}

    async def known(self, stream_id: str) -> bool:
        return await self.book.entry.remote(stream_id) is not None

    async def status(self, stream_id: str) -> dict | None:
        job = await self.book.entry.remote(stream_id)
        if job is None:
            return None
        return job["final"] or await self._ask(job)

    async def _ask(self, job: dict) -> dict:
        """A running job's status from its actor (a dead actor: reported as failed, once, in the book)."""
        stream_id = job["id"]
        try:
            actor = self._actor(stream_id)
        except ValueError as e:
            if not job.get("created") and time.time() - job["started"] < _NAMING_S:   # another replica is creating it
                return {**_blank(job), "state": "starting"}
            return await self._died(stream_id, e, job)
        try:
            st = await asyncio.wait_for(actor.status.remote(), timeout=10)
        except asyncio.TimeoutError:   # busy or not yet scheduled: said so, the job is kept
            return {**_blank(job), "state": "unresponsive", "reason": "no answer within 10 s"}
        except Exception as e:   # the actor died (or is gone): reported, not lost
            return await self._died(stream_id, e, job)
        if st["state"] in STATES_DONE:
            st = await self._finish(stream_id, st)
        return st

    async def _finish(self, stream_id: str, st: dict) -> dict:
        """Book a finished job's last status and end its actor (a finished job holds no CPU); returns the
        status booked (another replica's, if it booked first)."""
        kept = await self.book.finish.remote(stream_id, st)
        try:
            ray.kill(self._actor(stream_id))
        except Exception:
            pass
        self._actors.pop(stream_id, None)
        return kept or st

    async def _died(self, stream_id: str, e: BaseException, job: dict | None = None) -> dict:
        job = job or await self.book.entry.remote(stream_id) or {"id": stream_id, "source": None}
        return await self._finish(stream_id, {**_blank(job), "state": "failed",
                                              "reason": f"the stream's actor died ({reason(e)})"})

    async def listing(self) -> list[dict]:
        async def one(job: dict) -> dict:
            return job["final"] if job["final"] is not None else await self._ask(job)

        return list(await asyncio.gather(*(one(j) for j in await self.book.entries.remote())))

    async def events(self, stream_id: str, poll_s: float = 0.2):
        """Server-sent events: ``event: mask`` per line (``id`` its number), then ``event: end`` with the status."""
        seq = 0
        while True:
            try:
                new, st = await asyncio.wait_for(self._actor(stream_id).events_after.remote(seq), timeout=10)
            except asyncio.TimeoutError:   # busy: try again
                await asyncio.sleep(poll_s)
                continue
            except Exception as e:
                job = await self.book.entry.remote(stream_id)
                st = (job or {}).get("final") or await self._died(stream_id, e, job)
                yield f"event: end\ndata: {json.dumps(st)}\n\n"
                return
            for s, doc in new:
                seq = s
                yield f"id: {s}\nevent: mask\ndata: {json.dumps(doc, separators=(',', ':'))}\n\n"
            if st["state"] in STATES_DONE and not new:
                st = await self._finish(stream_id, st)
                yield f"event: end\ndata: {json.dumps(st)}\n\n"
                return
            await asyncio.sleep(poll_s)

    async def stop(self, stream_id: str) -> dict | None:
        job = await self.book.entry.remote(stream_id)
        if job is None:
            return None
        if job["final"] is not None:
            return job["final"]
        try:
            st = await asyncio.wait_for(self._actor(stream_id).stop.remote(), timeout=30)
            if st["state"] not in STATES_DONE:
                st = {**st, "state": "stopped"}
            return await self._finish(stream_id, st)
        except Exception as e:
            return await self._died(stream_id, e, job)


def job_actor_name(stream_id: str) -> str:
    return f"avs-stream-{stream_id}"


def _blank(job: dict) -> dict:
    return {"id": job["id"], "source": job.get("source"), "state": None, "reason": None, "masks": None,
            "dropped": None, "last": None, "latency_s": None, "latency": None}


__all__ = ["StreamJob", "StreamRegistry", "job_actor_name", "stream_allowed", "EVENTS_KEPT"]
