"""One tiny export per test session, shared by tests/export and tests/backends.

The dynamo exporter takes ~25 s for the four tiny graphs on 2 cores, so the
graphs are written once -- by the real command, ``avs-export onnx --config
tiny --seed 0 --precision both --verify`` (random weights seed 0, the same as
the session's ``tiny_bundle``) -- and reused; the CLI test reads that run's
output. Tests that damage files work on copies.
"""

from __future__ import annotations

import shutil
from pathlib import Path

SEED = 0
VERIFY_T = 2
_CACHE: dict[str, object] = {}


def tiny_model():
    from avs_engine.reference import build_model

    return build_model("tiny", seed=SEED)


def tiny_engine(tmp_root: Path) -> Path:
    """The folder of the session's tiny export (made on first use)."""
    if "engine" not in _CACHE:
        from click.testing import CliRunner

        from avs_engine.cli.export import main

        out = Path(tmp_root) / "tiny_engine"
        args = ["onnx", "--config", "tiny", "--seed", str(SEED), "--out", str(out), "--precision", "both",
                "--verify", "--verify-frames", str(VERIFY_T), "--fp16-reference", "rounded"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        _CACHE["engine"], _CACHE["cli_result"] = out, result
    return _CACHE["engine"]


def tiny_export_output(tmp_root: Path):
    """The click Result of the session's ``avs-export onnx`` run."""
    tiny_engine(tmp_root)
    return _CACHE["cli_result"]


def copy_engine(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
