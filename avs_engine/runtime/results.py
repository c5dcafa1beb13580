"""What a run learns about a video: one record per second, and the video's summary."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SecondResult:
    """The prediction for one second of video."""

    second: int  # 0-based
    mask: np.ndarray | None  # bool [H, W] at the video's (displayed) resolution; None once written out
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
    info: object = field(default=None, repr=False)  # the probe's MediaInfo; not serialised
    windows: list = field(default_factory=list, repr=False)  # the clip windows (io.clips.Window)

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

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)
