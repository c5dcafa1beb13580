"""The three steps of the batch job, as plain functions over rows (Ray Data runs them; no Ray import here).

1. :func:`decode_video` (a CPU task per video): the clip source -> one row
   per video: its clip windows, uint8 squashed frames
   ``[n_clips, T, s, s, 3]``, log-mel ``[n_clips, T, 1, 96, 64]`` and what
   the probe learned (``meta``, JSON).
2. :class:`InferenceActor` (an actor pool): builds and activates one runner;
   each call takes several videos and runs all their clips through
   :meth:`~avs_engine.runtime.model_step.ModelStep.run_clips` (the runner's ``run_clips``) ->
   ``logits [n_clips, T, 1, L, L]``.
3. :func:`write_video` (a CPU task per video): the runtime's writer into a
   staging folder, then ``result.json``, then one rename.

A row that fails at any step carries ``ok=False``, the step's name and a
one-line reason to the end (the driver writes it to the failures file);
nothing raises out of a step for a bad video, so one video never stops the
job. Every row has the same columns, so that Ray can put any rows in one block.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time

import numpy as np

from ..atomic import write_json_atomic
from ..errors import reason
from ..runtime.clip_source import ClipSource
from ..runtime.model_step import ClipPrediction, ModelStep
from ..runtime.results import VideoResult
from ..runtime.inputs import is_url
from ..runtime.outputs import RESULT_NAME, OutputDir
from ..runtime.untrusted import untrusted
from ..runtime.writer import VideoWriter
from .fetch import local_copy

STAGE_ORDER = ("fetch", "decode", "squash", "preprocess", "audio", "image_encoder", "fusion", "mask_decoder",
               "postprocess", "write")


def opened_as_source(source: str, local: str):
    """The open policy for ``local``, the file behind ``source``: a URL (from a list nobody here wrote) is opened
    strictly (the file protocol and the accepted containers only, see ``runtime.untrusted``); a local path, the
    user's own file, as FFmpeg likes."""
    return untrusted(local) if is_url(source) else contextlib.nullcontext(local)


def _empty_row_arrays() -> dict:
    return {"frames": np.zeros((0, 1, 1, 1, 3), np.uint8), "log_mel": np.zeros((0, 1, 1, 96, 64), np.float32),
            "windows": np.zeros((0, 4), np.int64)}


def failed(row: dict, stage: str, error: str, **arrays) -> dict:
    """``row`` marked failed at ``stage`` (arrays emptied)."""
    out = {**row, "ok": False, "stage": stage, "error": error, **_empty_row_arrays(), **arrays}
    return out


# -- 1. decode (CPU task) ---------------------------------------------------------------------------------------


def decode_video(row: dict, *, img_size: int, clip_seconds: int = 5, resize: str = "avsbench",
                 allow_silent: bool = False, max_bytes: int | None = None) -> dict:
    """``{"video_id", "source"}`` -> the video's clips and metadata (or a failed row)."""
    base = {"video_id": str(row["video_id"]), "source": str(row["source"]), "ok": True, "stage": "", "error": "",
            "meta": "{}", "timings": "{}"}
    timings: dict[str, float] = {}
    local = ""
    try:
        t0 = time.perf_counter()
        with local_copy(base["source"], max_bytes=max_bytes) as local, opened_as_source(base["source"], local):
            timings["fetch"] = time.perf_counter() - t0
            source = ClipSource(img_size, clip_seconds, resize, allow_silent)
            t0 = time.perf_counter()
            result = source.open(local)
            timings["decode"] = time.perf_counter() - t0
            clips = []
            for clip in source.clips(result):
                for k, v in clip.timings.items():
                    timings[k] = timings.get(k, 0.0) + v
                clips.append(clip)
    except Exception as e:  # any failure of this one video (the runtime's MediaError, PyAV's, a full disk ...)
        return failed(base, "decode", reason(e, local, base["source"]), meta="{}", timings=json.dumps(timings))
    meta = {"width": result.width, "height": result.height, "fps": result.fps, "duration_s": result.duration_s,
            "clip_seconds": result.clip_seconds, "n_seconds": result.n_seconds, "silent": result.silent,
            "warnings": result.warnings}
    windows = np.array([c.window_row for c in clips], np.int64)
    return {**base, "meta": json.dumps(meta), "timings": json.dumps(timings),
            "frames": np.stack([c.frames for c in clips]), "log_mel": np.stack([c.log_mel for c in clips]),
            "windows": windows}


# -- 2. inference (actor pool) ----------------------------------------------------------------------------------


class InferenceActor:
    """One runner per actor, built once; each call runs the clips of several videos together.

    ``spec``: a :class:`~avs_engine.backends.model_spec.ModelSpec`. ``max_frames``: frames per
    ``run_clips`` batch (None: :meth:`~avs_engine.runtime.model_step.ModelStep.default_max_frames`).
    """

    def __init__(self, spec, max_frames: int | None = None) -> None:
        self.spec = spec
        self.runner = spec.create().activate()
        self.model = ModelStep(self.runner)
        self.max_frames = self.model.default_max_frames() if max_frames is None else int(max_frames)
        self.model_info = json.dumps({**spec.describe(self.runner), "img_size": self.model.img_size})

    def __call__(self, batch: dict) -> dict:
        n = len(batch["video_id"])
        rows = [{k: batch[k][i] for k in batch} for i in range(n)]
        ok = [i for i, r in enumerate(rows) if bool(r["ok"])]
        logits: dict[int, list[np.ndarray]] = {}
        errors: dict[int, str] = {}
        stage_s: dict[str, float] = {}
        frames_of = {i: int(sum(f.shape[0] for f in rows[i]["frames"])) for i in ok}
        try:
            clips = [(f, m) for i in ok for f, m in zip(rows[i]["frames"], rows[i]["log_mel"])]
            flat = self.model.run_clips(clips, self.max_frames, stage_s)
            k = 0
            for i in ok:
                c = len(rows[i]["frames"])
                logits[i], k = flat[k:k + c], k + c
        except Exception:  # one bad video must not fail the others: run them one by one to find it
            stage_s = {}
            for i in ok:
                try:
                    logits[i] = self.model.run_clips(list(zip(rows[i]["frames"], rows[i]["log_mel"])),
                                                     self.max_frames, stage_s)
                except Exception as e:
                    errors[i] = reason(e)
        total_frames = max(1, sum(frames_of.values()))
        out = []
        for i, r in enumerate(rows):
            r = {k: v for k, v in r.items() if k not in ("frames", "log_mel")}
            r["model"] = self.model_info
            if i in errors:
                r.update(ok=False, stage="inference", error=errors[i])
            if i in logits and i not in errors:
                share = frames_of[i] / total_frames
                t = json.loads(str(r["timings"]))
                t.update({k: v * share for k, v in stage_s.items()})
                r["timings"] = json.dumps(t)
                r["logits"] = np.stack(logits[i]).astype(np.float32, copy=False)
            else:
                r["logits"] = np.zeros((0, 1, 1, 1, 1), np.float32)
            out.append(r)
        return {k: _column([r[k] for r in out]) for k in out[0]}


def _column(values: list) -> np.ndarray:
    """A batch column: a plain array for scalars and same-shape arrays, else an object array of arrays."""
    if values and isinstance(values[0], np.ndarray):
        if all(v.shape == values[0].shape for v in values):
            return np.stack(values)
        col = np.empty(len(values), object)
        for i, v in enumerate(values):
            col[i] = v
        return col
    return np.array(values)


# -- 3. write (CPU task) ----------------------------------------------------------------------------------------


def write_video(row: dict, *, out_dir: str, mask_format: str = "rle", overlay: bool = False,
                fetch_max_bytes: int | None = None) -> dict:
    """One video's logits -> ``out_dir/<video_id>/`` (masks, ``result.json``, optional overlay), atomically.

    Returns the summary row the driver reads: ``video_id, source, ok, stage, error, n_seconds, duration_s,
    timings`` (JSON), ``output`` (the committed folder, "" when not written)."""
    video_id, source = str(row["video_id"]), str(row["source"])
    summary = {"video_id": video_id, "source": source, "ok": bool(row["ok"]), "stage": str(row["stage"]),
               "error": str(row["error"]), "n_seconds": 0, "duration_s": 0.0, "timings": str(row["timings"]),
               "output": ""}
    if not summary["ok"]:
        return summary
    out = OutputDir(out_dir)
    staging = None
    try:
        meta = json.loads(str(row["meta"]))
        model = json.loads(str(row["model"]))
        timings = json.loads(str(row["timings"]))
        result = VideoResult(path=source, width=int(meta["width"]), height=int(meta["height"]), fps=float(meta["fps"]),
                             duration_s=float(meta["duration_s"]), clip_seconds=int(meta["clip_seconds"]),
                             n_seconds=int(meta["n_seconds"]), warnings=list(meta["warnings"]),
                             silent=bool(meta["silent"]))
        staging = out.staging(video_id)
        with local_copy(source, max_bytes=fetch_max_bytes) if overlay else contextlib.nullcontext(source) as local, \
                opened_as_source(source, local):
            result.path = local
            writer = VideoWriter(result, staging, int(model["img_size"]), overlay=overlay, mask_format=mask_format)
            writer.write_all(ClipPrediction.from_row(w, lg, result.clip_seconds)
                             for w, lg in zip(np.asarray(row["windows"]), row["logits"]))
            result.path = source
        for k, v in writer.seconds_s.items():
            timings[k] = timings.get(k, 0.0) + v
        doc = result.to_json()
        doc["video_id"] = video_id
        doc["model"] = {k: v for k, v in model.items() if k != "img_size"}
        order = [k for k in STAGE_ORDER if k in timings] + [k for k in timings if k not in STAGE_ORDER]
        doc["timings"] = {"stages": {k: {"total_s": round(timings[k], 6)} for k in order}, "order": order,
                          "where": "fetch, decode and squash in a decode task; preprocess and the model's stages in an "
                                   "inference actor (this video's share, by frames, of a batch of several videos); "
                                   "postprocess and write in a writer task"}
        doc["outputs"] = writer.outputs()
        write_json_atomic(staging / RESULT_NAME, doc)
        final = out.commit(staging, video_id)
        summary.update(n_seconds=len(result.seconds), duration_s=result.duration_s, timings=json.dumps(timings),
                       output=str(final or out.final(video_id)))
    except Exception as e:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        summary.update(ok=False, stage="write", error=reason(e))
    return summary


__all__ = ["InferenceActor", "STAGE_ORDER", "decode_video", "failed", "write_video"]
