"""From a video file to one mask per second: three overlapped pieces, streaming.

clip source (decode, 1 fps sampling, squash, log-mel; its own thread) ->
model step (the runner's clip method; the caller's thread) -> writer (masks,
logits, overlay; its own thread). Bounded queues between them keep memory at
a couple of clips whatever the video's length; errors in any thread reach
the caller; threads are always joined.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterator

from ..atomic import write_json_atomic
from ..artifacts.spec import STAGE_ORDER
from ..backends.base import Runner
from ..io.postprocess import logits_to_masks, mask_stats
from .outputs import VideoOutput
from .clip_source import ClipSource
from .model_step import ModelStep
from .results import SecondResult, VideoResult
from .threads import background
from .timing import StageTimer
from .writer import VideoWriter

# Where each timed step runs, in pipeline order (the three pieces overlap, so these add up to more than the wall time).
SOURCE_STEPS = ("decode", "squash")
HOST_STEPS = ("preprocess",)
WRITER_STEPS = ("postprocess", "write")


class Pipeline:
    """Runs an activated runner over videos.

    ``clip_seconds``: T, the window length (5 as in training). ``resize``:
    "avsbench" (224x224 squash then up to the encoder size, as the training
    data) or "direct". ``allow_silent``: run videos without audio on silence.
    """

    def __init__(self, runner: Runner, clip_seconds: int = 5, resize: str = "avsbench", allow_silent: bool = False) -> None:
        self.model = ModelStep(runner)
        self.runner = self.model.runner
        self.source = ClipSource(self.model.img_size, clip_seconds, resize, allow_silent)
        self.clip_seconds = self.source.clip_seconds

    def start(self, path: str | Path) -> VideoResult:
        """Probe the video (raises MediaError/NoAudioError with one line) and plan its clips."""
        return self.source.open(path)

    def predictions(self, result: VideoResult, timer: StageTimer) -> Iterator:
        """Each clip's :class:`~avs_engine.runtime.model_step.ClipPrediction`, the source one clip ahead on its thread."""
        for clip in background(self.source.clips(result), depth=1, name="avs-source"):
            for k, v in clip.timings.items():
                timer.add(k, v)
            pred = self.model(clip)
            for k, v in pred.timings.items():
                timer.add(k, v)
            yield pred

    def iter_video(self, path: str | Path, result: VideoResult | None = None) -> Iterator[SecondResult]:
        """Yield one SecondResult (with its mask, bool [H, W]) per second, in order, as each clip is done.

        ``result`` (from :meth:`start`) collects per-second stats, warnings and timings.
        """
        result = result or self.start(path)
        timer = StageTimer()
        size_hw = (result.height, result.width)
        to_masks = self.model.runner.masks_function() or logits_to_masks
        for pred in self.predictions(result, timer):
            for second in pred.window.new_seconds:
                t0 = time.perf_counter()
                mask = to_masks(pred.second_logits(second)[None], size_hw, mid=self.model.img_size)[0]
                stats = mask_stats(mask)
                result.seconds.append(SecondResult(second, None, float(stats["area_fraction"]), stats["bbox"]))
                timer.add("postprocess", time.perf_counter() - t0)
                yield SecondResult(second, mask, float(stats["area_fraction"]), stats["bbox"])
        result.timings = self._timings(timer, with_writer=False)

    def run_video(self, path: str | Path, run_dir: str | Path, *, overlay: bool = True, save_logits: bool = False,
                  model: dict | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
        """Segment ``path``; write ``masks/``, ``overlay.mp4``, ``result.json`` (and ``logits/``) under ``run_dir/<stem>/``.

        Everything is written in a staging folder renamed at the end: a
        failure leaves nothing half-written. Returns the ``result.json``
        document plus ``output_dir`` and ``speed_line``. ``progress(done, total)``:
        called with the seconds handed to the writer so far and the video's total.
        """
        t0 = time.perf_counter()
        result = self.start(path)
        timer = StageTimer()
        with VideoOutput(run_dir, Path(path).stem) as out:
            writer = VideoWriter(result, out.path, self.model.img_size, overlay=overlay, save_logits=save_logits,
                                 masks_function=self.model.runner.masks_function())
            writer.write_all(self.predictions(result, timer), progress)
            for k, v in writer.seconds_s.items():
                timer.add(k, v, calls=len(result.seconds))
            result.timings = self._timings(timer, with_writer=True)
            total = time.perf_counter() - t0
            doc = result.to_json()
            doc["model"] = {k: v for k, v in (model or {}).items() if k != "summary"}
            doc["timings"]["total_s"] = round(total, 6)
            doc["timings"]["realtime_factor"] = round(result.duration_s / total, 4) if total > 0 else None
            doc["outputs"] = writer.outputs()
            write_json_atomic(out.path / "result.json", doc)
            final = out.commit()
        stages, n = doc["timings"]["stages"], max(len(result.seconds), 1)
        per_s = ", ".join(f"{k} {stages[k]['total_s'] * 1e3 / n:.1f}" for k in doc["timings"]["order"] if k in stages)
        doc["speed_line"] = f"{per_s} ms per second of video; saved to {final}"
        doc["output_dir"] = str(final)
        return doc

    def _timings(self, timer: StageTimer, with_writer: bool) -> dict:
        model_stages = [k for k in timer.seconds if k not in SOURCE_STEPS + HOST_STEPS + WRITER_STEPS]
        order = [*SOURCE_STEPS, *HOST_STEPS, *[s for s in STAGE_ORDER if s in model_stages],
                 *[s for s in model_stages if s not in STAGE_ORDER], *WRITER_STEPS]
        return {
            "stages": timer.to_dict(),
            "order": [k for k in order if k in timer.seconds],
            "clock": getattr(self.runner.stage_clock(), "kind", "host monotonic clock"),
            "overlapped": "decode+squash run on the source thread and postprocess+write on the writer thread, "
                          "while the model runs: the stages add up to more than the wall time" if with_writer else
                          "decode+squash run on the source thread while the model runs",
        }
