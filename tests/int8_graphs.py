"""One INT8 export of the bundled demo model per test session, shared by the INT8 tests.

``avs-export onnx --weights demo.safetensors --precision fp32,int8`` (the real command,
the INT8 graphs checked on 2 generated clips of 2 s) takes ~30 s on 2 cores, so it is run once.
"""

from __future__ import annotations

from pathlib import Path

_CACHE: dict[str, object] = {}


def demo_int8(tmp_root: Path) -> tuple[Path, str]:
    """(the export folder, the command's output)."""
    if "out" not in _CACHE:
        from click.testing import CliRunner

        from avs_engine.cli.export import main
        from avs_engine.models import DEMO_WEIGHTS

        out = Path(tmp_root) / "demo_int8"
        r = CliRunner().invoke(main, ["onnx", "--weights", str(DEMO_WEIGHTS), "--out", str(out), "--precision", "fp32,int8",
                                      "--no-verify", "--threads", "1"])
        assert r.exit_code == 0, r.output
        _CACHE["out"], _CACHE["output"] = out, r.output
    return _CACHE["out"], _CACHE["output"]
