"""The pipeline and its result objects. Never imports torch (a test enforces it)."""

from .pipeline import Pipeline, SecondResult, StageTimer, VideoResult

__all__ = ["Pipeline", "SecondResult", "StageTimer", "VideoResult"]
