"""From a video file to one mask per second, streaming.

video -> clips (decode, sample, log-mel; a background thread, so decoding the
next clip overlaps inference of this one) -> preprocess -> the runner's four
stages -> logits -> masks at the video's resolution. Memory is bounded by a
couple of clips whatever the video's length.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..backends.base import Runner
from ..io.clips import iter_clips, plan_windows
from ..io.frames import n_seconds
from ..io.postprocess import logits_to_masks, mask_stats
from ..io.preprocess import prepare_frames
from ..io.probe import probe
from ..artifacts.spec import STAGE_ORDER
from .timing import StageTimer


@dataclass
class SecondResult:
    """The prediction for one second of video."""

    second: int  # 0-based
    mask: np.ndarray | None  # bool [H, W] at the video's resolution (None once streamed out)
    area_fraction: float
    bbox: list[int] | None  # [x0, y0, x1, y1), half-open pixel box, or None when the mask is empty

    def to_json(self) -> dict:
        return {"second": self.second, "area_fraction": self.area_fraction, "bbox": self.bbox}


@dataclass
class VideoResult:
    """Everything a run learned about one video (masks are streamed out, not kept)."""

    path: str
    width: int
    height: int
    fps: float
    duration_s: float
    clip_seconds: int
    n_seconds: int = 0  # seconds that will be predicted (one sampled frame each)
    seconds: list[SecondResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    silent: bool = False
    info: object = field(default=None, repr=False)  # the MediaInfo from start(); not serialised

    def to_json(self) -> dict:
        return {
            "video": self.path,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "duration_s": self.duration_s,
            "clip_seconds": self.clip_seconds,
            "n_seconds": self.n_seconds,
            "silent_audio": self.silent,
            "warnings": self.warnings,
            "seconds": [s.to_json() for s in self.seconds],
            "timings": self.timings,
        }


_DONE = object()


def _background(it: Iterator, depth: int = 1) -> Iterator:
    """Run an iterator in a thread, ``depth`` items ahead; re-raises its errors here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def work() -> None:
        try:
            for item in it:
                if stop.is_set():
                    return
                q.put(item)
            q.put(_DONE)
        except BaseException as e:  # handed to the consumer
            q.put(e)

    t = threading.Thread(target=work, daemon=True, name="avs-decode")
    t.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():  # let the producer see the stop flag
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            t.join(0.05)


class Pipeline:
    """Runs an activated runner over videos.

    ``clip_seconds``: T, the window length (5 as in training). ``resize``:
    "avsbench" (224x224 squash then up to the encoder size, as the training
    data) or "direct".
    """

    def __init__(self, runner: Runner, clip_seconds: int = 5, resize: str = "avsbench", allow_silent: bool = False) -> None:
        if not runner.is_active:
            runner.activate()
        self.runner = runner
        self.clip_seconds = int(clip_seconds)
        self.resize = resize
        self.allow_silent = allow_silent

    def _sync(self) -> None:
        sync = getattr(self.runner, "synchronize", None)
        if sync:
            sync()

    def run_stages(self, image: np.ndarray, log_mel: np.ndarray, timer: StageTimer) -> np.ndarray:
        """The four stages, each timed. image [T,3,S,S], log_mel [T,1,96,64] -> logits [T,1,L,L]."""
        r = self.runner
        with timer.stage("audio", sync=True):
            a128 = r.run("audio", {"log_mel": log_mel})["a128"]
        with timer.stage("image_encoder", sync=True):
            enc = r.run("image_encoder", {"image": image, "a128": a128})["enc"]
        with timer.stage("fusion", sync=True):
            fused = r.run("fusion", {"enc": enc, "a128": a128})
        with timer.stage("mask_decoder", sync=True):
            logits = r.run("mask_decoder", {"enc": enc, **fused})["logits"]
        return logits

    def iter_video(self, path: str | Path, result: VideoResult | None = None) -> Iterator[SecondResult]:
        """Yield one SecondResult per second, in order, as soon as its clip is done.

        ``result`` (from :meth:`start`) collects per-second stats, warnings and timings.
        """
        result = result or self.start(path)
        timer = StageTimer(self._sync)
        cfg = self.runner.config
        size_hw = (result.height, result.width)

        def clips():
            it = iter_clips(str(path), self.clip_seconds, allow_silent=self.allow_silent, info=result.info)  # probed once, in start()
            while True:
                t0 = time.perf_counter()
                try:
                    clip = next(it)
                except StopIteration:
                    return
                timer.add("decode", time.perf_counter() - t0)
                t0 = time.perf_counter()
                image = prepare_frames(clip.frames, cfg.encoder.img_size, self.resize)
                timer.add("preprocess", time.perf_counter() - t0)
                yield clip, image

        for clip, image in _background(clips()):
            if clip.silent and not result.silent:
                result.silent = True
                result.warnings.append("no audio track: ran with silence (--allow-silent)")
            logits = self.run_stages(image, clip.log_mel.astype(np.float32, copy=False), timer)
            t0 = time.perf_counter()
            start = clip.window.start
            for second in clip.window.new_seconds:
                i = second - start
                mask = logits_to_masks(logits[i : i + 1], size_hw, mid=cfg.encoder.img_size)[0]
                stats = mask_stats(mask)
                sec = SecondResult(second, mask, float(stats["area_fraction"]), stats["bbox"])
                result.seconds.append(SecondResult(second, None, sec.area_fraction, sec.bbox))
                timer.add("postprocess", time.perf_counter() - t0)
                yield sec
                t0 = time.perf_counter()
        result.timings = {
            "stages": timer.to_dict(),
            "order": ["decode", "preprocess", *STAGE_ORDER, "postprocess"],
        }

    def start(self, path: str | Path) -> VideoResult:
        """Probe the video (raises MediaError/NoAudioError with one line) and plan its clips."""
        info = probe(str(path))
        if not info.has_audio and not self.allow_silent:
            from ..errors import NoAudioError

            raise NoAudioError(f"{path}: no audio track (use --allow-silent to run with silence)")
        n = n_seconds(info)
        windows = plan_windows(n, self.clip_seconds)
        result = VideoResult(
            path=str(path), width=info.width, height=info.height, fps=float(info.fps),
            duration_s=float(info.duration_s), clip_seconds=windows[0].length if windows else self.clip_seconds,
            n_seconds=n, info=info,
        )
        if windows and windows[0].length < self.clip_seconds:
            result.warnings.append(
                f"video is {n} s long, shorter than the {self.clip_seconds} s window: ran with T = {windows[0].length}"
            )
        return result
