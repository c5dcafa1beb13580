"""One video through the pipeline into its output folder, atomically."""

from __future__ import annotations

import time
from pathlib import Path

from tqdm import tqdm

from ..io.rundir import VideoOutput
from ..atomic import write_json_atomic
from ..io.writers import OverlayWriter, write_mask_png
from ..runtime.pipeline import Pipeline


def run_video(runner, video: Path, run_dir: Path, *, clip_seconds: int, resize: str, allow_silent: bool,
              overlay: bool, model: dict, progress: bool) -> dict:
    """Segment ``video``; write masks/, overlay.mp4, result.json under ``run_dir/<stem>/``.

    Everything is written in a staging folder renamed at the end: a failure
    leaves nothing half-written. Raises AvsError subclasses with one-line messages.
    """
    pipeline = Pipeline(runner, clip_seconds=clip_seconds, resize=resize, allow_silent=allow_silent)
    t0 = time.perf_counter()
    result = pipeline.start(video)
    n = None
    with VideoOutput(run_dir, Path(video).stem) as out:
        masks_dir = out.path / "masks"
        masks_dir.mkdir(parents=True, exist_ok=True)
        writer = OverlayWriter(str(video), out.path / "overlay.mp4") if overlay else None
        write_s = 0.0
        bar = tqdm(total=result.n_seconds, desc=Path(video).name, unit="s", disable=not progress, leave=False)
        try:
            for sec in pipeline.iter_video(video, result):
                tw = time.perf_counter()
                write_mask_png(masks_dir / f"{sec.second + 1:06d}.png", sec.mask)
                if writer is not None:
                    writer.add_second(sec.second, sec.mask)
                write_s += time.perf_counter() - tw
                bar.update(1)
            if writer is not None:
                tw = time.perf_counter()
                writer.close()
                write_s += time.perf_counter() - tw
                writer = None
        finally:
            bar.close()
            if writer is not None:
                writer.abort()
        n = len(result.seconds)
        total = time.perf_counter() - t0
        stages = result.timings.get("stages", {})
        stages["write"] = {"total_s": round(write_s, 6), "calls": n}
        doc = result.to_json()
        doc["model"] = {k: v for k, v in model.items() if k != "summary"}
        doc["timings"]["total_s"] = round(total, 6)
        doc["timings"]["realtime_factor"] = round(result.duration_s / total, 4) if total > 0 else None
        doc["outputs"] = {"masks": "masks/", "overlay": "overlay.mp4" if overlay else None}
        write_json_atomic(out.path / "result.json", doc)
        final = out.commit()
    order = result.timings.get("order", []) + ["write"]
    per_s = ", ".join(f"{k} {stages[k]['total_s'] * 1e3 / max(n, 1):.1f}" for k in order if k in stages)
    doc["speed_line"] = f"{per_s} ms per second of video; saved to {final}"
    doc["output_dir"] = str(final)
    return doc
