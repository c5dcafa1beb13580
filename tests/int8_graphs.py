"""One INT8 set of the bundled demo model per test run, shared by the INT8 tests.

The shipped FP32 graphs of the demo (trained weights) are copied and ``avs-export int8`` (the
real command: each INT8 graph checked on 2 generated clips of 2 s) adds the INT8 set, once per
test run (``tests/made_once.py``). Exporting the demo again with ``avs-export onnx --precision
fp32,int8`` gives the same set; a slow test checks that.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.made_once import made_once


def _add_int8(out: Path) -> str:
    from click.testing import CliRunner

    from avs_engine.cli.export import main
    from avs_engine.models import DEMO_GRAPHS

    shutil.copytree(DEMO_GRAPHS, out)
    r = CliRunner().invoke(main, ["int8", str(out), "--threads", "1"])
    assert r.exit_code == 0, r.output
    return r.output


def demo_int8(tmp_root: Path) -> tuple[Path, str]:
    """(the folder: the demo's shipped fp32 + fp16 graphs with the int8 set added, the command's output)."""
    return made_once(tmp_root, "demo_int8", _add_int8)
