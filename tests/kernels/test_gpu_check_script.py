"""benchmarks/gpu_check.py rehearsed on the CPU (--dry-run: small shapes, emulated kernels, the
end-to-end and backend sections on --device cpu)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
SECTIONS = {"build", "check", "headline", "stbava", "global_attn", "stage", "e2e", "speed", "paths", "train"}


def load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_script_imports_and_parses():
    mod = load()
    assert mod.REAL.N == mod.REAL.grid**2 == 4096 and (mod.REAL.attn_heads, mod.REAL.head_dim) == (16, 80)
    assert mod.DRY.N == mod.DRY.grid**2 and mod.QUICK.N == mod.QUICK.grid**2


@pytest.mark.slow  # a fresh interpreter importing torch: 5-15 s on 2 cores
def test_runs_as_a_script_outside_the_repo(tmp_path):
    """`python benchmarks/gpu_check.py` puts benchmarks/, not the repo root, on sys.path: devtools must still import."""
    r = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0 and "--time-budget" in r.stdout, r.stderr


def test_quick_dry_run(tmp_path):
    out = tmp_path / "r.json"
    assert load().main(["--dry-run", "--quick", "--seed", "3", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    rows = doc["rows"]
    assert {r["section"] for r in rows} == SECTIONS and doc["failures"] == [] and doc["skipped"] == []
    e2e = [r for r in rows if r["section"] == "e2e" and "ok" in r]
    assert e2e and all(r["ok"] for r in e2e)
    assert all(r["mask_iou_min"] == 1.0 for r in e2e if "precision fp32" in r["name"])
    for precision in ("bf16", "fp16"):  # mixed precision with --fused: the route that crashed on a GPU once
        assert any(f"precision {precision} --fused" in r["name"] and r["mask_iou_min"] >= 0.9 for r in e2e), precision
    head = {r["name"]: r for r in rows if r["section"] == "headline"}
    routes = [r for name, r in head.items() if ": clip T=5" in name]
    assert [r["name"].split(" ", 4)[-1] for r in routes] == [
        "fp32: clip T=5", "bf16: clip T=5", "bf16 + --fused: clip T=5"]  # TF32: CUDA only; --compile: not in --quick
    assert all(r["median_ms"] > 0 and "fusion_ms" in r and "image_encoder_ms" in r for r in routes)
    assert "flash kernel" in routes[-1]["runner"] and routes[-1]["logits_rel_l2_vs_fp32"] < 0.05
    assert any("fused vs eager" in name and r["speedup"] > 0 for name, r in head.items())
    forms = [name for name in head if name.startswith("global attention B=")]
    assert len(forms) == 4 and all(head[f]["rel_l2_vs_fp32"] < 2e-2 for f in forms)
    assert (out.with_suffix(".md")).read_text().startswith("# gpu_check results")
    assert "## Headline" in out.with_suffix(".md").read_text()
    assert any("global attention float32 in PyTorch" in r["runner"] for r in e2e)
    speed = [r for r in rows if r["section"] == "speed"]
    assert speed[0]["x_vs_torch_fp32_eager"] == 1.0 and all("x_vs_torch_fp32_eager" in r for r in speed)
    trt = [r for r in rows if r["section"] == "paths" and r["name"] == "TensorRT engines"]
    assert trt and trt[0]["status"].startswith("not available")
    train = [r for r in rows if r["section"] == "train"]
    steps = [r for r in train if "avs-train step" in r["name"]]
    assert steps and all(r["ok"] and r["median_ms"] > 0 and r["estimate_gb"] > 0 for r in steps)
    agree = [r for r in train if "bf16 vs fp32" in r["name"]]
    assert len(agree) == 1 and 0 <= agree[0]["mask_iou_median"] <= 1 and "error" not in agree[0]


def test_time_budget_skips_and_says_so(tmp_path):
    out = tmp_path / "r.json"
    assert load().main(["--dry-run", "--quick", "--time-budget", "0", "--skip", "build", "check", "stbava",
                        "global_attn", "stage", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["skipped"] == ["headline: whole section", "e2e: whole section", "paths: whole section", "train: whole section"]


@pytest.mark.slow
def test_dry_run(tmp_path):
    out = tmp_path / "r.json"
    assert load().main(["--dry-run", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert {r["section"] for r in rows} == SECTIONS
