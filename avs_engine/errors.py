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


# -- one line for any failure of one input (every command's error lines and failure records) ----------------

_CONTROL = {i: f"\\x{i:02x}" for i in range(32)} | {0x7F: "\\x7f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


def printable(text: str) -> str:
    """``text`` with control characters (a newline in a file name...) escaped, so that it stays on one line."""
    return str(text).translate(_CONTROL)


def quote_path(path) -> str:
    """A path for an error line: as is, or repr-quoted when it holds control characters."""
    s = str(path)
    return repr(s) if printable(s) != s else s


def reason(e: BaseException, *paths: str) -> str:
    """One line for any exception: the project's own messages (and OSError's) as they are, a leading path of
    ``paths`` dropped (the caller names the input), others with their type in front."""
    msg = (str(e).strip().splitlines() or [""])[0].strip()
    for p in paths:
        if p and msg.startswith(str(p)):
            msg = msg[len(str(p)):].lstrip(": ").strip()
    if not isinstance(e, (AvsError, OSError)) or not msg:
        msg = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    return msg


def error_line(path, e: BaseException) -> str:
    """``<file>: <message>`` on one line, for any exception raised while processing ``path``."""
    raw, shown = str(path), quote_path(path)
    msg = reason(e, raw)
    if raw and raw != shown:
        msg = msg.replace(raw, shown)
    return f"{shown}: {printable(msg) or type(e).__name__}"
