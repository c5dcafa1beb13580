"""One tiny export per test session, shared by tests/export and tests/backends.

The dynamo exporter takes ~25 s for the four tiny graphs on 2 cores, so the
graphs (fp32 + fp16, random weights seed 0, the same as the session's
``tiny_bundle``) are written once and reused; tests that damage files work on copies.
"""

from __future__ import annotations

import shutil
from pathlib import Path

SEED = 0
_CACHE: dict[str, Path] = {}


def tiny_model():
    from avs_engine.reference import build_model

    return build_model("tiny", seed=SEED)


def tiny_engine(tmp_root: Path) -> Path:
    """The folder of the session's tiny export (made on first use)."""
    if "tiny" not in _CACHE:
        from avs_engine.export.onnx_export import export_onnx

        out = Path(tmp_root) / "tiny_engine"
        export_onnx(tiny_model(), out, precision="both", checkpoint={"random_seed": SEED})
        _CACHE["tiny"] = out
    return _CACHE["tiny"]


def copy_engine(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
