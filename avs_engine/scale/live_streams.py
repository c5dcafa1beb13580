"""Live jobs for avs-serve: one Ray actor per stream, running the runtime's live run; the ingress lists,
follows (server-sent events) and stops them.

:class:`StreamJob` (a Ray actor) builds its own runner from the model spec, opens the stream and runs
:func:`avs_engine.runtime.live_job.run_live` on a thread, keeping the last :data:`EVENTS_KEPT` mask lines
(a client that falls further behind skips ahead: memory stays flat). :class:`StreamRegistry` (held by the
ingress) starts jobs for allow-listed sources, answers their status, and reports a job whose actor died
(``state: "failed"``, a one-line reason) instead of losing it.
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
from .url_check import UrlRefused, allowed_url

EVENTS_KEPT = 256
FINISHED_KEPT = 100   # finished jobs the registry still lists
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
    ``resize``, ``allow_silent``, ``duration_s``, ``mask_fps``, ``realtime``, ``input_format``."""

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
                                 allow_silent=bool(o.get("allow_silent")), mask_fps=int(o.get("mask_fps", 1)))
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
    """The live jobs one ingress started: ``start``, ``status``, ``listing``, ``events`` (SSE lines), ``stop``."""

    def __init__(self, spec, allow: tuple[str, ...], defaults: dict, cpus: float = 0.5, max_streams: int = 16) -> None:
        self.spec, self.allow, self.defaults = spec, tuple(allow), dict(defaults)
        self.cpus, self.max_streams = float(cpus), int(max_streams)
        self.jobs: dict[str, dict] = {}   # id -> {"actor", "source", "final": status once done}

    def _running(self) -> int:
        return sum(1 for j in self.jobs.values() if j["final"] is None)

    def start(self, body: dict) -> tuple[int, dict]:
        """(HTTP status, document) for ``POST /v1/streams`` with ``body`` ``{"source", "duration_s", "mask_fps", ...}``."""
        source = body.get("source")
        if not isinstance(source, str) or not source:
            return 400, {"error": "give the stream as JSON: {\"source\": \"rtsp://...\"}"}
        if not stream_allowed(source, self.allow):
            return 403, {"error": f"{source}: not under any --allow-source URL prefix of this server"}
        if self._running() >= self.max_streams:
            return 429, {"error": f"this server runs at most {self.max_streams} live streams at once"}
        options = dict(self.defaults)
        for key, kind in (("duration_s", float), ("mask_fps", int), ("clip_seconds", int), ("realtime", bool)):
            if body.get(key) is not None:
                try:
                    options[key] = kind(body[key])
                except (TypeError, ValueError):
                    return 400, {"error": f"{key}: expected {kind.__name__}, got {body[key]!r}"}
        stream_id = uuid.uuid4().hex[:12]
        actor = StreamJob.options(num_cpus=self.cpus, name=f"avs-stream-{stream_id}").remote(
            stream_id, self.spec, source, options)
        self.jobs[stream_id] = {"actor": actor, "source": source, "final": None, "started": time.time()}
        self._forget_old()
        return 201, {"id": stream_id, "source": source, "events": f"/v1/streams/{stream_id}/events"}

    def _forget_old(self) -> None:
        done = [k for k, j in self.jobs.items() if j["final"] is not None]
        for k in done[:-FINISHED_KEPT]:
            del self.jobs[k]

    async def status(self, stream_id: str) -> dict | None:
        job = self.jobs.get(stream_id)
        if job is None:
            return None
        if job["final"] is not None:
            return job["final"]
        try:
            st = await asyncio.wait_for(job["actor"].status.remote(), timeout=10)
        except asyncio.TimeoutError:   # busy or not yet scheduled: said so, the job is kept
            return {**self._blank(stream_id), "state": "unresponsive", "reason": "no answer within 10 s"}
        except Exception as e:   # the actor died: reported, not lost
            st = self._died(stream_id, e)
        if st["state"] in STATES_DONE:
            self._finish(stream_id, st)
        return st

    def _finish(self, stream_id: str, st: dict) -> None:
        """Keep a finished job's last status and end its actor (a finished job holds no CPU)."""
        job = self.jobs[stream_id]
        job["final"] = st
        try:
            ray.kill(job["actor"])
        except Exception:
            pass

    def _blank(self, stream_id: str) -> dict:
        return {"id": stream_id, "source": self.jobs[stream_id]["source"], "state": None, "reason": None, "masks": None,
                "dropped": None, "last": None, "latency_s": None, "latency": None}

    def _died(self, stream_id: str, e: BaseException) -> dict:
        st = {**self._blank(stream_id), "state": "failed", "reason": f"the stream's actor died ({reason(e)})"}
        self._finish(stream_id, st)
        return st

    async def listing(self) -> list[dict]:
        return list(await asyncio.gather(*(self.status(k) for k in list(self.jobs))))

    async def events(self, stream_id: str, poll_s: float = 0.2):
        """Server-sent events: ``event: mask`` per line (``id`` its number), then ``event: end`` with the status."""
        job = self.jobs.get(stream_id)
        seq = 0
        while True:
            try:
                new, st = await asyncio.wait_for(job["actor"].events_after.remote(seq), timeout=10)
            except asyncio.TimeoutError:   # busy: try again
                await asyncio.sleep(poll_s)
                continue
            except Exception as e:
                st = job["final"] or self._died(stream_id, e)
                yield f"event: end\ndata: {json.dumps(st)}\n\n"
                return
            for s, doc in new:
                seq = s
                yield f"id: {s}\nevent: mask\ndata: {json.dumps(doc, separators=(',', ':'))}\n\n"
            if st["state"] in STATES_DONE and not new:
                self._finish(stream_id, st)
                yield f"event: end\ndata: {json.dumps(st)}\n\n"
                return
            await asyncio.sleep(poll_s)

    async def stop(self, stream_id: str) -> dict | None:
        job = self.jobs.get(stream_id)
        if job is None:
            return None
        if job["final"] is None:
            try:
                st = await asyncio.wait_for(job["actor"].stop.remote(), timeout=30)
                if st["state"] not in STATES_DONE:
                    st = {**st, "state": "stopped"}
                self._finish(stream_id, st)
            except Exception as e:
                self._died(stream_id, e)
        return job["final"]


__all__ = ["StreamJob", "StreamRegistry", "stream_allowed", "EVENTS_KEPT"]
