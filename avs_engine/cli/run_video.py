"""One video through the pipeline into its output folder, with a progress bar."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from ..runtime.pipeline import Pipeline


def run_video(runner, video: Path, run_dir: Path, *, clip_seconds: int, resize: str, allow_silent: bool,
              overlay: bool, model: dict, progress: bool, save_logits: bool = False) -> dict:
    """Segment ``video``; write masks/, overlay.mp4, result.json (and logits/) under ``run_dir/<stem>/``.

    A failure leaves nothing half-written; raises AvsError subclasses with one-line messages.
    """
    pipeline = Pipeline(runner, clip_seconds=clip_seconds, resize=resize, allow_silent=allow_silent)
    bar = tqdm(desc=Path(video).name, unit="s", disable=not progress, leave=False)

    def advance(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    try:
        return pipeline.run_video(video, run_dir, overlay=overlay, save_logits=save_logits, model=model,
                                  progress=advance)
    finally:
        bar.close()
