"""Artifacts several test files share (an export takes 30-50 s on 2 cores), made once per test run.

Run plainly, pytest has one process and the artifact lives in the session's base temp.
Under pytest-xdist every worker has its own base temp below one shared parent: the
first worker to ask makes the artifact there while holding a file lock, the others
wait on the lock and reuse what it made.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from filelock import FileLock


def shared_root(tmp_root: Path) -> Path:
    """The folder every process of this test run can see: the base temp, or its parent under xdist."""
    tmp_root = Path(tmp_root)
    return tmp_root.parent if os.environ.get("PYTEST_XDIST_WORKER") else tmp_root


def made_once(tmp_root: Path, name: str, make: Callable[[Path], str]) -> tuple[Path, str]:
    """``make(folder)`` writes the artifact into ``folder`` and returns its log text; it runs once per
    test run. Returns (folder, text). A ``make`` that raises leaves nothing marked done: the next
    caller tries again and sees the same failure."""
    root = shared_root(tmp_root)
    folder, done = root / name, root / f"{name}.done.json"
    with FileLock(str(root / f"{name}.lock")):
        if not done.is_file():
            text = make(folder)
            done.write_text(json.dumps({"output": text}))
    return folder, json.loads(done.read_text())["output"]
