"""A process environment where torch cannot be imported: what a user with the torch-free install has."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_HOOK = textwrap.dedent("""
    import sys

    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "segment_anything", "safetensors"):
                raise ImportError(f"{name} is blocked in this test (a torch-free install)")
            return None

    sys.meta_path.insert(0, _NoTorch())
""")


def no_torch_env(folder: Path) -> dict[str, str]:
    """os.environ plus a ``sitecustomize`` (written under ``folder``) that blocks torch and its kin."""
    hook = folder / "no-torch-hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(_HOOK)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(hook), str(ROOT)]))
