"""Atomic file writes: a temporary name beside the target, renamed into place when complete.

A crash, Ctrl-C or a full disk never leaves a half-written file under the
final name. numpy, json and the standard library only: the artifact manifests
use these too, and must not pull in the media libraries.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_target(path: Path):
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _json_default(obj):
    # numpy scalars/arrays and paths appear in result dicts; everything else is an error.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def write_json_atomic(path, obj, indent: int = 2) -> Path:
    """Write ``obj`` as JSON (numpy scalars/arrays and paths converted); returns ``path``."""
    path = Path(path)
    text = json.dumps(obj, indent=indent, default=_json_default, allow_nan=False)
    with atomic_target(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")
    return path
