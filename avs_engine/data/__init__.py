"""Data: AVSBench S4/MS3 on disk, the generator of sounding-object videos, prepared splits."""

from __future__ import annotations

from pathlib import Path

from .avsbench import AVSBenchDataset, DatasetError, Sample, write_split
from .generator import GeneratorConfig, generate_clip, plan_clip, split_seeds
from .prepared import PreparedSplit, prepared_generated
from .streaming import StreamingSplit


def open_split(split: str, img_size: int, *, generated: int = 0, root: str | Path | None = None,
               subset: str = "s4", cache_dir: str | Path | None = None, T: int = 5, progress: bool = False,
               log_mel: str = "wav"):
    """A split for training or scoring: ``generated`` clips of the generator's ``split`` seed
    range (made once, cached in ``cache_dir``), or AVSBench ``subset`` under ``root`` read from disk
    (log-mel from ``audio_wav`` with our front end, or ``log_mel="pickle"``: the shipped pickles)."""
    if generated:
        return prepared_generated(split, generated, img_size, cache_dir, T, progress)
    if root is None:
        raise DatasetError("no data: give an AVSBench folder (--data) or use generated clips (--generated)")
    return StreamingSplit(AVSBenchDataset(root, subset, split, T, log_mel=log_mel), img_size)


__all__ = [
    "AVSBenchDataset", "DatasetError", "GeneratorConfig", "PreparedSplit", "Sample", "StreamingSplit",
    "generate_clip", "open_split", "plan_clip", "prepared_generated", "split_seeds", "write_split",
]
