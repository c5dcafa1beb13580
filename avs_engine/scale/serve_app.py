"""``avs-serve``: the model behind an HTTP API, on Ray Serve (FastAPI ingress: ``/docs`` is the OpenAPI page).

Two deployments:

- :class:`Ingress` (FastAPI): takes the upload (or reads an allowed path or
  URL), probes and decodes it with the clip source in a thread, sends each
  clip to the model deployment, then writes the masks with the runtime's
  writer (COCO RLE; the overlay when asked) and answers JSON. Limits: upload
  bytes, video seconds, a wall-clock timeout per request.
- :class:`Segmenter`: one runner per replica; ``@serve.batch`` gathers the
  clips of concurrent requests, up to ``max_batch_frames`` frames, and runs
  them through the runner's ``run_clips`` in one batch.

Errors answer ``{"error": "<one line>", "request_id": ...}``: 400 a malformed
request, 403 a path or URL not allowed, 413 an upload over the byte limit,
422 a video that cannot be used (corrupt, empty, no audio, too long), 503 a model
replica that died while running the request (Serve replaces it; the next request is served), 504 the
timeout, 500 anything else (the traceback goes to the server's log, never to
the client). The API is documented in ``docs/scale.md``.
"""


import asyncio
import base64
import logging
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
import ray
from ray import serve

from .. import __version__
from ..errors import AvsError, MediaError, reason
from ..runtime import rle
from ..runtime.clip_source import ClipSource
from ..runtime.model_step import ClipPrediction, ModelStep
from ..runtime.untrusted import untrusted
from ..runtime.writer import OVERLAY_NAME, VideoWriter
from .fetch import local_copy
from .live_streams import StreamRegistry
from ..runtime.inputs import is_url
from .url_check import UrlRefused, allowed_url, canonical

log = logging.getLogger("avs_engine.serve")

_SUFFIX_OF_TYPE = {"video/mp4": ".mp4", "video/quicktime": ".mov", "video/webm": ".webm", "video/x-matroska": ".mkv",
                   "video/x-msvideo": ".avi", "video/mp2t": ".ts"}


@dataclass
class ServeConfig:
    """The service's model, limits and scale.

    ``allow_sources``: path folders or URL prefixes a request may name with
    ``source=`` (empty: uploads only). ``max_upload_mb``: bytes of an upload
    or a fetched source. ``max_video_s``: longest video taken. ``timeout_s``:
    per request, from the first byte read to the answer.
    ``max_batch_frames``: frames the model replica batches across requests
    (at least ``clip_seconds``); ``batch_wait_s``: how long it waits to fill a batch.
    """

    runner: object  # the ModelSpec each model replica builds its runner from
    img_size: int | None = None
    clip_seconds: int = 5
    resize: str = "avsbench"
    allow_silent: bool = False
    allow_sources: tuple[str, ...] = ()
    max_upload_mb: float = 200.0
    max_video_s: float = 600.0
    timeout_s: float = 300.0
    model_replicas: int = 1
    ingress_replicas: int = 1
    model_cpus: float = 1.0
    model_gpus: float = 0.0
    ingress_cpus: float = 0.5
    max_batch_frames: int = 32
    batch_wait_s: float = 0.02
    max_requests_per_ingress: int = 8
    max_queued_requests: int = 64
    stream_cpus: float = 0.5     # logical CPUs of each live stream's actor
    max_streams: int = 16        # live streams at once (all ingress replicas together)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1e6)

    def limits(self) -> dict:
        return {"max_upload_mb": self.max_upload_mb, "max_video_s": self.max_video_s, "timeout_s": self.timeout_s,
                "clip_seconds": self.clip_seconds, "sources_allowed": bool(self.allow_sources)}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = (message.strip().splitlines() or [""])[0]


def source_allowed(source: str, allow: tuple[str, ...]) -> bool:
    """``source`` (a path or URL) is under one of the ``allow`` prefixes: a folder (compared after resolving
    ``..`` and links, so that ``/data/../etc`` is not under ``/data``) or a URL prefix (compared in canonical
    form, see ``url_check``)."""
    if is_url(source):
        try:
            allowed_url(source, allow)
        except UrlRefused:
            return False
        return True
    real = os.path.realpath(source)
    for a in allow:
        if is_url(a):
            continue
        root = os.path.realpath(a)
        if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
            return True
    return False


# -- the model deployment --------------------------------------------------------------------------------------


def _frames_in(clips: list) -> int:
    return int(sum(int(c[0].shape[0]) for c in clips))


@serve.deployment
class Segmenter:
    """One runner; clips from concurrent requests batched by frames (``@serve.batch`` with a frame count)."""

    def __init__(self, spec, max_batch_frames: int = 32, batch_wait_s: float = 0.02) -> None:
        self.spec = spec
        self.runner = spec.create().activate()
        self.model = ModelStep(self.runner)
        self.max_frames = int(max_batch_frames)
        self.infer.set_max_batch_size(self.max_frames)
        self.infer.set_batch_wait_timeout_s(float(batch_wait_s))
        self._info = {**spec.describe(self.runner), "img_size": self.model.img_size}

    def info(self) -> dict:
        return self._info

    def check_health(self) -> None:
        if not self.runner.is_active:
            raise RuntimeError("runner is not active")

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.02, batch_size_fn=_frames_in)
    async def infer(self, clips: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, dict]]:
        """Each item: (frames uint8 [T, s, s, 3], log_mel float32 [T, 1, 96, 64]) -> (logits [T, 1, L, L], batch facts)."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        # In a thread: the replica keeps taking requests (the next batch fills) while this one runs.
        logits = await asyncio.to_thread(self.model.run_clips, clips, self.max_frames, timings)
        facts = {"clips": len(clips), "frames": _frames_in(clips), "seconds": time.perf_counter() - t0, "stages": timings}
        return [(lg, facts) for lg in logits]


# -- the HTTP ingress ------------------------------------------------------------------------------------------

api = FastAPI(
    title="avs-serve",
    version=__version__,
    description="Audio-visual segmentation (ST-BAVA): POST a video with sound, get one mask per second of the "
                "objects making the sound (COCO RLE), with its area fraction and bounding box.",
)


def _error(status: int, message: str, request_id: str) -> JSONResponse:
    return JSONResponse({"error": message, "request_id": request_id}, status_code=status,
                        headers={"X-Request-Id": request_id})


@api.exception_handler(RequestValidationError)
async def _bad_params(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "query")
    return _error(400, f"bad request parameter {where}: {first.get('msg', 'invalid')}", uuid.uuid4().hex[:12])


def _worker_died(e: BaseException) -> bool:
    """Whether ``e`` says that the actor (a model replica) running the call died or became unreachable."""
    import ray.exceptions as rex

    return isinstance(e, (rex.RayActorError, rex.ActorUnavailableError, rex.WorkerCrashedError))


async def respond(work, timeout_s: float, tmp: str = "") -> JSONResponse:
    """Await ``work`` (a coroutine returning the answer's JSON document) within ``timeout_s``; every failure
    becomes a JSON error with one line: HttpError its status, the runtime's errors 422, the timeout 504,
    anything else 500 with a fixed line (its traceback goes to the server's log only)."""
    request_id = uuid.uuid4().hex[:12]
    try:
        doc = await asyncio.wait_for(work, timeout=timeout_s)
        doc["request_id"] = request_id
        return JSONResponse(doc, headers={"X-Request-Id": request_id})
    except HttpError as e:
        return _error(e.status, e.message, request_id)
    except asyncio.TimeoutError:
        return _error(504, f"timed out after {timeout_s:g} s (the server's per-request limit)", request_id)
    except AvsError as e:  # the runtime's one-line errors about this video
        return _error(422, reason(e, tmp), request_id)
    except Exception as e:
        if _worker_died(e):
            log.warning("request %s: the model replica died (%s)", request_id, type(e).__name__)
            return _error(503, "the model replica stopped while running this request (it is being replaced); "
                               "send the request again", request_id)
        log.exception("request %s failed", request_id)
        return _error(500, "internal error; the server log has the details", request_id)


_BODY_DOC = {
    "requestBody": {
        "description": "The video file's bytes (any container FFmpeg reads), or nothing when `source` names it.",
        "required": False,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "video/mp4": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@serve.deployment
@serve.ingress(api)
class Ingress:
    def __init__(self, model, cfg: ServeConfig) -> None:
        self.model = model
        self.cfg = cfg
        self.img_size = cfg.img_size or cfg.runner.img_size()
        self.streams = StreamRegistry(cfg.runner, cfg.allow_sources,
                                      {"clip_seconds": cfg.clip_seconds, "resize": cfg.resize, "allow_silent": cfg.allow_silent},
                                      cpus=cfg.stream_cpus, max_streams=cfg.max_streams,
                                      app=serve.get_replica_context().app_name)

    @api.get("/healthz", summary="Is the service up, and with which model and limits")
    async def healthz(self) -> JSONResponse:
        try:
            info = await asyncio.wait_for(self.model.info.remote(), timeout=10)
        except Exception as e:
            return JSONResponse({"status": "unavailable", "error": reason(e)}, status_code=503)
        return JSONResponse({"status": "ok", "model": {k: v for k, v in info.items() if k != "img_size"},
                             "limits": self.cfg.limits(), "version": __version__})

    @api.post("/v1/segment", summary="Segment the sounding objects of a video, one mask per second",
              openapi_extra=_BODY_DOC)
    async def segment(self, request: Request,
                      overlay: bool = Query(False, description="Also return overlay.mp4 (base64), the video with the mask tinted over it"),
                      source: str | None = Query(None, description="A path or URL the server reads instead of an upload (only under the server's --allow-source prefixes)"),
                      filename: str | None = Query(None, description="The upload's file name (its suffix helps FFmpeg with raw streams)")):
        tmp = tempfile.mkdtemp(prefix="avs-serve-")
        try:
            return await respond(self._segment(request, overlay, source, filename, tmp), self.cfg.timeout_s, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # -- live streams (one Ray actor each: avs_engine/scale/live_streams.py)

    @api.post("/v1/streams", summary="Start a live job on an allow-listed stream URL", status_code=201)
    async def start_stream(self, request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except Exception:
            body = None
        if not isinstance(body, dict):
            return _error(400, 'give the stream as JSON: {"source": "rtsp://..."}', uuid.uuid4().hex[:12])
        status, doc = await self.streams.start(body)
        if "error" in doc:
            return _error(status, doc["error"], uuid.uuid4().hex[:12])
        return JSONResponse(doc, status_code=status)

    @api.get("/v1/streams", summary="The live jobs: state, masks, latency, dropped seconds")
    async def list_streams(self) -> JSONResponse:
        return JSONResponse({"streams": await self.streams.listing()})

    @api.get("/v1/streams/{stream_id}", summary="One live job's status")
    async def stream_status(self, stream_id: str) -> JSONResponse:
        st = await self.streams.status(stream_id)
        return JSONResponse(st) if st is not None else _error(404, f"no stream {stream_id}", uuid.uuid4().hex[:12])

    @api.get("/v1/streams/{stream_id}/events", summary="A live job's masks as server-sent events (event: mask, then end)")
    async def stream_events(self, stream_id: str):
        if not await self.streams.known(stream_id):
            return _error(404, f"no stream {stream_id}", uuid.uuid4().hex[:12])
        return StreamingResponse(self.streams.events(stream_id), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    @api.delete("/v1/streams/{stream_id}", summary="Stop a live job")
    async def stop_stream(self, stream_id: str) -> JSONResponse:
        st = await self.streams.stop(stream_id)
        return JSONResponse(st) if st is not None else _error(404, f"no stream {stream_id}", uuid.uuid4().hex[:12])

    # -- steps

    async def _segment(self, request: Request, overlay: bool, source: str | None, filename: str | None,
                       tmp: str) -> dict:
        t0 = time.perf_counter()
        local, shown = await self._input(request, source, filename, tmp)
        # Whatever a request names is untrusted: FFmpeg opens it alone, as one of the accepted containers.
        with untrusted(local):
            return await self._segment_file(local, shown, overlay, tmp, t0)

    async def _segment_file(self, local: str, shown: str, overlay: bool, tmp: str, t0: float) -> dict:
        if self.img_size is None:
            self.img_size = int((await self.model.info.remote())["img_size"])
        clip_source = ClipSource(self.img_size, self.cfg.clip_seconds, self.cfg.resize, self.cfg.allow_silent)
        result, clips = await asyncio.to_thread(self._decode, clip_source, local, shown)
        t1 = time.perf_counter()
        answers = await asyncio.gather(*(self.model.infer.remote((c.frames, c.log_mel)) for c in clips))
        t2 = time.perf_counter()
        doc = await asyncio.to_thread(self._write, result, clips, [a[0] for a in answers], overlay, tmp, shown)
        t3 = time.perf_counter()
        batches = [a[1] for a in answers]
        doc["batching"] = {"clips": len(clips), "largest_batch_clips": max(b["clips"] for b in batches),
                           "largest_batch_frames": max(b["frames"] for b in batches)}
        doc["timings"] = {"read_and_decode_s": round(t1 - t0, 4), "model_s": round(t2 - t1, 4),
                          "postprocess_s": round(t3 - t2, 4), "total_s": round(t3 - t0, 4)}
        return doc

    async def _input(self, request: Request, source: str | None, filename: str | None, tmp: str) -> tuple[str, str]:
        """The local file to read and the name to show for it."""
        limit = self.cfg.max_upload_bytes
        if source:
            if not self.cfg.allow_sources:
                raise HttpError(403, "this server reads uploads only (start avs-serve with --allow-source PREFIX "
                                     "to let requests name paths or URLs)")
            if not source_allowed(source, self.cfg.allow_sources):
                try:   # say why a URL is refused (a user name, a backslash ...) when it is not only outside
                    canonical(source) if is_url(source) else None
                except UrlRefused as e:
                    raise HttpError(403, f"{e} (--allow-source)") from None
                raise HttpError(403, f"{source}: not under any --allow-source prefix of this server")
            if not is_url(source):
                if os.path.isfile(source) and os.path.getsize(source) > limit:
                    raise HttpError(413, f"{source}: larger than the {self.cfg.max_upload_mb:g} MB limit")
                return source, source
            dst = os.path.join(tmp, "source" + (Path(source.split("?")[0]).suffix[:8] or ".bin"))

            def fetch():
                with local_copy(source, max_bytes=limit, tmp_dir=tmp, allow=self.cfg.allow_sources) as got:
                    shutil.copyfile(got, dst)

            try:
                await asyncio.to_thread(fetch)
            except UrlRefused as e:   # a redirect out of the allowed prefixes
                raise HttpError(403, f"{source}: {e}") from None
            except MediaError as e:
                raise HttpError(413 if "limit" in str(e) else 422, str(e)) from None
            return dst, source
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            raise HttpError(413, f"upload of {int(length) / 1e6:.1f} MB is larger than the {self.cfg.max_upload_mb:g} MB limit")
        ctype = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
        if ctype.startswith("multipart/"):
            raise HttpError(400, "send the video's bytes as the request body (Content-Type: video/mp4 or "
                                 "application/octet-stream), not as a multipart form")
        suffix = (Path(filename).suffix[:8] if filename else "") or _SUFFIX_OF_TYPE.get(ctype, ".bin")
        path = os.path.join(tmp, "upload" + suffix)
        n = 0
        with open(path, "wb") as f:
            async for chunk in request.stream():
                n += len(chunk)
                if n > limit:
                    raise HttpError(413, f"upload is larger than the {self.cfg.max_upload_mb:g} MB limit")
                f.write(chunk)
        if n == 0:
            raise HttpError(400, "empty upload: send the video's bytes as the request body, or name it with source=")
        return path, filename or "upload"

    def _decode(self, clip_source: ClipSource, local: str, shown: str):
        try:
            result = clip_source.open(local)
        except AvsError as e:
            raise HttpError(422, f"{shown}: {reason(e, local)}") from None
        if result.duration_s > self.cfg.max_video_s:
            raise HttpError(422, f"{shown}: the video is {result.duration_s:.0f} s long; this server takes up to "
                                 f"{self.cfg.max_video_s:g} s")
        try:
            clips = list(clip_source.clips(result))
        except AvsError as e:
            raise HttpError(422, f"{shown}: {reason(e, local)}") from None
        return result, clips

    def _write(self, result, clips, logits, overlay: bool, tmp: str, shown: str) -> dict:
        out = Path(tmp) / "out"
        writer = VideoWriter(result, out, self.img_size, overlay=overlay, mask_format="rle")
        overlay_path = writer.write_all(ClipPrediction(clip.window, lg) for clip, lg in zip(clips, logits))
        doc = result.to_json()
        doc["video"] = shown
        doc.pop("timings", None)
        for s in doc["seconds"]:
            s["mask"] = writer.rles[s["second"]]
        doc["mask_format"] = f"{rle.FORMAT}: column-major, pycocotools' compressed counts string"
        doc["overlay"] = None
        if overlay_path is not None:
            doc["overlay"] = {"name": OVERLAY_NAME, "mime": "video/mp4",
                              "base64": base64.b64encode(Path(overlay_path).read_bytes()).decode("ascii")}
        return doc


def build_app(cfg: ServeConfig):
    """The Serve application: :class:`Ingress` in front of :class:`Segmenter`."""
    frames = max(int(cfg.max_batch_frames), int(cfg.clip_seconds))
    model = Segmenter.options(
        num_replicas=cfg.model_replicas,
        ray_actor_options={"num_cpus": cfg.model_cpus, "num_gpus": cfg.model_gpus},
        max_ongoing_requests=max(8, 2 * frames),  # one request per clip: room for two full batches
    ).bind(cfg.runner, frames, cfg.batch_wait_s)
    return Ingress.options(
        num_replicas=cfg.ingress_replicas,
        ray_actor_options={"num_cpus": cfg.ingress_cpus},
        max_ongoing_requests=cfg.max_requests_per_ingress,
        max_queued_requests=cfg.max_queued_requests,
    ).bind(model, cfg)


def start(cfg: ServeConfig, *, host: str = "127.0.0.1", port: int = 8000, name: str = "avs") -> str:
    """Start Serve's HTTP proxy on ``host:port`` and deploy the app (Ray must be initialised); returns its URL."""
    serve.start(http_options={"host": host, "port": port, "request_timeout_s": cfg.timeout_s + 30})
    serve.run(build_app(cfg), name=name, route_prefix="/", blocking=False)
    return f"http://{host}:{port}"


def stop(name: str = "avs") -> None:
    """Shut Serve down, and end the app ``name``'s book of live jobs (a detached actor: it would outlive Serve)."""
    serve.shutdown()
    from .stream_directory import directory_name

    try:
        ray.kill(ray.get_actor(directory_name(name)))
    except ValueError:   # no live job was ever asked about
        pass


__all__ = ["HttpError", "Ingress", "Segmenter", "ServeConfig", "build_app", "respond", "source_allowed", "start", "stop"]
