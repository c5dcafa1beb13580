"""One INT8 export of the bundled demo model per test run, shared by the INT8 tests.

``avs-export onnx --weights demo.safetensors --precision fp32,int8`` (the real command,
the INT8 graphs checked on 2 generated clips of 2 s) takes 30-50 s on 2 cores, so it
runs once per test run (``tests/made_once.py``).
"""

from __future__ import annotations

from pathlib import Path

from tests.made_once import made_once


def _export(out: Path) -> str:
    from click.testing import CliRunner

    from avs_engine.cli.export import main
    from avs_engine.models import DEMO_WEIGHTS

    r = CliRunner().invoke(main, ["onnx", "--weights", str(DEMO_WEIGHTS), "--out", str(out), "--precision", "fp32,int8",
                                  "--no-verify", "--threads", "1"])
    assert r.exit_code == 0, r.output
    return r.output


def demo_int8(tmp_root: Path) -> tuple[Path, str]:
    """(the export folder, the command's output)."""
    return made_once(tmp_root, "demo_int8", _export)
