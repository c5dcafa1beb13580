"""One tiny export per test run, shared by tests/export, tests/backends and tests/cli.

The dynamo exporter takes ~40 s for the four tiny graphs on 2 cores, so the
graphs are written once per test run (``tests/made_once.py``) -- by the real
command, ``avs-export onnx --config tiny --seed 0 --precision both --verify``
(random weights seed 0, the same as the session's ``tiny_bundle``) -- and
reused; the CLI test reads that run's output. Tests that damage files work on
copies.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.made_once import made_once

SEED = 0
VERIFY_T = 2


def tiny_model():
    from avs_engine.reference import build_model

    return build_model("tiny", seed=SEED)


def _export(out: Path) -> str:
    from click.testing import CliRunner

    from avs_engine.cli.export import main

    args = ["onnx", "--config", "tiny", "--seed", str(SEED), "--out", str(out), "--precision", "both",
            "--verify", "--verify-frames", str(VERIFY_T), "--fp16-reference", "rounded"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.output


def tiny_engine(tmp_root: Path) -> Path:
    """The folder of the test run's tiny export (made on first use)."""
    return made_once(tmp_root, "tiny_engine", _export)[0]


def tiny_export_output(tmp_root: Path) -> str:
    """What the test run's ``avs-export onnx`` printed."""
    return made_once(tmp_root, "tiny_engine", _export)[1]


def copy_engine(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
