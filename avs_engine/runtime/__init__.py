"""The runtime: clip source -> model step -> writer, and the pipeline that overlaps them. Never imports torch (a test enforces it)."""

from .clip_source import ClipInput, ClipSource
from .model_step import ClipPrediction, ModelStep
from .pipeline import Pipeline
from .results import SecondResult, VideoResult
from .timing import StageTimer
from .writer import VideoWriter

__all__ = ["ClipInput", "ClipPrediction", "ClipSource", "ModelStep", "Pipeline", "SecondResult", "StageTimer",
           "VideoResult", "VideoWriter"]
