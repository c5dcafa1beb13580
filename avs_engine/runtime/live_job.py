"""One live run: live source -> live step -> live writer, until the stream ends, ``duration_s``, or a signal.

The live way of mapping the runtime's three pieces (threads for offline
``avs-run``, Ray for the batch job, a request for Serve): the source reads on
its thread and keeps only the newest complete second; the caller's thread
runs :class:`~avs_engine.runtime.live.LiveStep` on it and hands the logits to the
writer's thread.
Ctrl-C and SIGTERM (inside :func:`~avs_engine.runtime.job.sigterm_as_interrupt`)
stop the run cleanly: the last line is whole, the summary is written, and
the run folder is committed from its staging name only then.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..atomic import write_json_atomic
from ..backends.base import Runner
from ..io.stream import StreamReader
from .job import Terminated
from .live import LiveStep
from .live_writer import JSONL_NAME, LiveWriter
from .outputs import VideoOutput, clean_up_run_dir, next_run_dir
from .stream_source import LiveSource
from .writer import MASKS_DIR

SUMMARY_NAME = "result.json"
_DROPPED_LISTED = 100   # the summary names at most this many dropped seconds (the count is always exact)


def open_stream(source: str, *, input_format: str | None = None, options: dict | None = None, realtime: bool = False,
                allow_silent: bool = False, mask_fps: int = 1, audio_source: str | None = None,
                audio_format: str | None = None, audio_options: dict | None = None,
                audio_sync: str = "start") -> StreamReader:
    """Open a live source (one-line MediaError/NoAudioError when it cannot be used) for :func:`run_live`;
    ``audio_source`` (``audio_format``, ``audio_options``, ``audio_sync``): its audio from a second input."""
    return StreamReader(source, input_format=input_format, options=options, realtime=realtime,
                        allow_silent=allow_silent, per_second=mask_fps, audio_source=audio_source,
                        audio_format=audio_format, audio_options=audio_options, audio_sync=audio_sync)


@dataclass
class LiveOutcome:
    """What :func:`run_live` did: ``summary`` (also in ``result.json``), ``output_dir`` (None without a run folder)."""

    summary: dict = field(default_factory=dict)
    output_dir: Path | None = None

    @property
    def stopped(self) -> str:
        return self.summary.get("stopped", "")


def run_live(runner: Runner, reader: StreamReader, *, clip_seconds: int = 5, resize: str = "avsbench",
             duration_s: float | None = None, project: str | Path | None = None, name: str = "live",
             exist_ok: bool = False, png: bool = False, lines: TextIO | None = None, model: dict | None = None,
             on_mask=None, mask_fps: int = 1, view=None, stop: threading.Event | None = None) -> LiveOutcome:
    """Segment ``reader``'s stream live; returns the outcome once it stops.

    ``duration_s``: stop after the stream's second ``duration_s - 1`` (None: run until the stream ends or a
    signal). ``project``/``name``/``exist_ok``: the numbered run folder (``masks.jsonl``, ``masks/`` with
    ``png``, ``result.json``); None: no folder. ``lines``: a text stream that gets every JSON line.
    ``on_mask(doc)``: told each line's document. ``mask_fps``: K masks a second from K staggered windows (the
    reader must hand out K seconds a second: ``StreamReader(per_second=K)``); each has its own ring.
    ``view``: a :class:`~avs_engine.runtime.live_view.LiveView` shown each tinted frame (the caller closes it).
    ``stop``: an event another thread sets to end the run as a signal would (``stopped``: "stopped on request").
    Exceptions other than a stop signal discard the folder."""
    if reader.per_second != mask_fps:
        raise ValueError(f"mask_fps {mask_fps} needs a reader with per_second={mask_fps}, got {reader.per_second}")
    steps = [LiveStep(runner, clip_seconds) for _ in range(mask_fps)]   # one ring per phase
    step = steps[0]
    source = LiveSource(reader, step.img_size, resize, view=view is not None, stop_event=stop)
    out = run_dir = None
    if project is not None:
        run_dir = next_run_dir(project, name, exist_ok=exist_ok)
        out = VideoOutput(run_dir, "stream")
    writer = LiveWriter((reader.height, reader.width), step.img_size, out_dir=out.path if out else None,
                        lines=lines, png=png, masks_function=runner.masks_function(), on_mask=on_mask, view=view)
    stopped = "end of stream"
    t0 = time.monotonic()
    source.start()
    try:
        try:
            for item in source:
                result = steps[item.phase].push(item.second, item.frame, item.log_mel)
                writer.put(item, result, dropped=len(source.dropped))
                if duration_s is not None and item.time_s + 1.0 / mask_fps >= duration_s - 1e-9:
                    stopped = f"duration {duration_s:g} s reached"
                    break
        except KeyboardInterrupt as e:
            stopped = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted (Ctrl-C)"
        if stopped == "end of stream" and stop is not None and stop.is_set():
            stopped = "stopped on request"
        source.stop()
        if stopped == "end of stream":
            if source.error is not None:
                stopped = f"source failed: {source.error}"
            elif reader.stopped_reason:
                stopped = reader.stopped_reason
        writer.close()
        summary = _summary(reader, source, writer, step, stopped, time.monotonic() - t0, model)
        if out is not None:
            summary["outputs"] = {"masks": JSONL_NAME, "png": f"{MASKS_DIR}/" if png else None}
            write_json_atomic(out.path / SUMMARY_NAME, summary)
            return LiveOutcome(summary, out.commit())
        return LiveOutcome(summary, None)
    except BaseException:
        source.stop(0.5)
        writer.abort()
        if out is not None:
            out.discard()
            clean_up_run_dir(run_dir, remove_if_empty=True)   # only if nothing else is in it
        raise


def _summary(reader: StreamReader, source: LiveSource, writer: LiveWriter, step: LiveStep, stopped: str,
             elapsed_s: float, model: dict | None) -> dict:
    dropped = source.dropped
    return {
        "source": reader.source, "audio_source": reader.audio_source, "stopped": stopped, "elapsed_s": round(elapsed_s, 3),
        "stream": {"width": reader.width, "height": reader.height, "fps": reader.fps, "audio": reader.has_audio,
                   **({"audio_sync": reader.audio_sync} if reader.audio_source else {})},
        "clip_seconds": step.clip_seconds, "mask_fps": reader.per_second,
        "seconds_received": source.received, "masks": writer.count,
        "dropped": len(dropped), "dropped_seconds": list(dropped[:_DROPPED_LISTED]),
        "damaged_packets": reader.damaged_packets,
        "latency": writer.latency_summary(),
        "model": {k: v for k, v in (model or {}).items() if k != "summary"},
    }


__all__ = ["LiveOutcome", "open_stream", "run_live", "SUMMARY_NAME"]
