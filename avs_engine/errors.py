"""Errors a user can cause. One base class; each message is one line naming the
file or tensor, what was expected and what was found.

``assert`` is kept for our own invariants; these are for user input.
"""


class AvsError(Exception):
    """Base class of every error avs-engine reports to a user."""


class MediaError(AvsError):
    """A video/audio file is missing, unreadable, empty, or lacks a stream we need."""


class NoAudioError(MediaError):
    """The video has no audio track (``--allow-silent`` runs it with silence)."""


class ConfigError(AvsError):
    """An unknown preset or a malformed config file."""


class CheckpointError(AvsError):
    """A checkpoint cannot be read, or its keys/shapes do not fit the model."""


class DatasetError(AvsError):
    """A data set folder is missing files or does not have the AVSBench layout."""


class ReportError(AvsError, ValueError):
    """A benchmark report does not have the documented shape; the message lists every problem."""


class ShapeError(AvsError):
    """An array handed to a stage has the wrong name, dtype or shape."""


class BackendError(AvsError):
    """A backend cannot run here (framework missing, no device, bad engine)."""


class CudaError(BackendError):
    """A CUDA driver / NVRTC call failed, or no compiler could build a kernel."""
