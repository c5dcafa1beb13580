"""TensorRT's Python module, imported once and explained when missing, and a logger that keeps errors.

Thin on purpose: the engine builder (export side) and the tensorrt backend
(runtime side) both need these two things and nothing else from each other.
"""

from __future__ import annotations

import sys
from typing import Any

from ..errors import BackendError

TRT_INSTALL = "pip install tensorrt -- TensorRT 10.x or 11.x, on a machine with an NVIDIA GPU and driver"


def import_tensorrt():
    """``import tensorrt``, or one :class:`BackendError` line naming the install."""
    try:
        import tensorrt as trt
    except ImportError as e:
        if (e.name or "tensorrt").startswith("tensorrt") and "lib" not in str(e):
            raise BackendError(f"TensorRT is not installed here ({TRT_INSTALL})") from None
        raise BackendError(f"TensorRT is installed but cannot load ({first_line(e)}); reinstall it: {TRT_INSTALL}") from None
    except OSError as e:  # a shared library of TensorRT's missing
        raise BackendError(f"TensorRT is installed but cannot load ({first_line(e)}); reinstall it: {TRT_INSTALL}") from None
    return trt


def make_logger(trt, verbose: bool = False, stream=None):
    """A ``trt.ILogger`` that prints warnings and errors (everything with ``verbose``) and keeps
    the errors, so that a failed build can say why in one line."""

    out = stream or sys.stderr
    limit = trt.ILogger.Severity.VERBOSE if verbose else trt.ILogger.Severity.WARNING

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg) -> None:
            if int(severity) <= int(trt.ILogger.Severity.ERROR):
                self.errors.append(str(msg))
            if int(severity) <= int(limit):
                print(f"[TensorRT] {msg}", file=out)

    return _Logger()


def first_line(x: Any) -> str:
    """The first line of a message (or the type's name when it is empty), for one-line errors."""
    s = str(x).strip()
    return s.splitlines()[0] if s else type(x).__name__
