"""Running avs-engine's own commands in child processes (clean memory, real entry points)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def child_env() -> dict[str, str]:
    """The environment for a child that must import this avs_engine, installed or from a source tree."""
    import avs_engine

    root = str(Path(avs_engine.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def cli_command(module: str, prog: str, *args: str) -> list[str]:
    """``python -c`` running ``module.main()`` as ``prog`` (the console script may not be on PATH)."""
    code = f"import sys; from {module} import main; sys.argv[0] = {prog!r}; main()"
    return [sys.executable, "-c", code, *args]
