"""benchmarks/gpu_check.py rehearsed on the CPU (--dry-run: small shapes, emulated kernels)."""

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_script_imports_and_parses():
    mod = load()
    assert mod.REAL.N == mod.REAL.grid**2 == 4096 and (mod.REAL.attn_heads, mod.REAL.head_dim) == (16, 80)
    assert mod.DRY.N == mod.DRY.grid**2


@pytest.mark.slow
def test_dry_run(tmp_path):
    out = tmp_path / "r.json"
    assert load().main(["--dry-run", "--json", str(out)]) == 0
    import json

    rows = json.loads(out.read_text())["rows"]
    assert {r["section"] for r in rows} == {"build", "check", "stbava", "global_attn", "stage"}
