"""The bundled demo model's ONNX graphs are in step with its weights, and the demo runs without torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from avs_engine.artifacts.graph_manifest import read_manifest, sha256_file
from avs_engine.models import DEMO_GRAPHS, DEMO_WEIGHTS
from tests.no_torch import no_torch_env

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_graphs_are_exported_from_the_shipped_weights():
    m = read_manifest(DEMO_GRAPHS)  # every graph present, with its recorded size and sha256
    weights = [f for f in m.checkpoint["files"] if f["role"] == "weights"]
    assert weights and weights[0]["file"] == DEMO_WEIGHTS.name
    assert weights[0]["sha256"] == sha256_file(DEMO_WEIGHTS), (
        "avs_engine/models/demo_onnx is stale: rebuild it with the command in avs_engine/models/README.md")
    assert m.precisions == ["fp32", "fp16"]
    assert m.model_config().name == "demo"
    assert m.parity is not None and m.parity["ok"]  # the export passed its parity check against PyTorch


def test_package_data_ships_the_graphs():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"**/*.onnx"' in text and '"**/*.json"' in text and '"**/*.safetensors"' in text


def test_demo_runs_without_torch_and_matches_the_torch_backend(tmp_path, sample_video):
    """avs-run with no model option in a process where torch cannot be imported gives the torch backend's masks."""
    from avs_engine.cli.run import main

    env = no_torch_env(tmp_path)
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked" in probe.stderr  # the hook works
    r = subprocess.run([sys.executable, "-m", "avs_engine.cli.run", str(sample_video), "--project", str(tmp_path / "o"), "--quiet", "--no-overlay"],
                       env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith("model: demo (onnxruntime") and "bundled demo model" in first
    t = CliRunner().invoke(main, [str(sample_video), "--backend", "torch", "--project", str(tmp_path / "t"), "--quiet", "--no-overlay"])
    assert t.exit_code == 0, t.output
    assert "bundled demo model" in t.stderr.splitlines()[0] and "torch" in t.stderr.splitlines()[0]
    for i in range(1, 7):
        a = np.asarray(Image.open(tmp_path / "t" / "run" / "clip" / "masks" / f"{i:06d}.png"))
        b = np.asarray(Image.open(tmp_path / "o" / "run" / "clip" / "masks" / f"{i:06d}.png"))
        # identical up to pixels whose logit is within float rounding of 0
        assert (a == b).mean() > 0.9995, i
    doc = json.loads((tmp_path / "o" / "run" / "clip" / "result.json").read_text())
    assert doc["model"]["backend"] == "onnxruntime" and doc["model"]["bundled_demo"] is True
    assert doc["model"]["checkpoint"]["files"][0]["sha256"] == sha256_file(DEMO_WEIGHTS)


def test_extras_keep_torch_out_of_the_base_and_ort_installs():
    import re
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = lambda req: re.split(r"[<>=!\[; ]", req, maxsplit=1)[0].lower()  # noqa: E731
    base = {name(r) for r in project["dependencies"]}
    assert base == {"numpy", "av", "click", "tqdm", "pillow"}
    extras = {k: {name(r) for r in v} for k, v in project["optional-dependencies"].items()}
    assert extras["ort"] == {"onnxruntime"} and extras["ort-gpu"] == {"onnxruntime-gpu"}
    assert {"torch", "torchvision", "segment-anything", "safetensors"} <= extras["torch"] <= extras["export"]
    assert {"onnx", "onnxscript", "onnxruntime"} <= extras["export"]
    assert any(r.replace(" ", "") == "cuda-python[all]>=12.8" for r in project["optional-dependencies"]["trt"])  # cuda.bindings + NVRTC
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    test_line = next(line for line in ci.splitlines() if "python -m pytest" in line)
    assert test_line in readme  # CI runs the README's second command
    assert "pip install -e '.[ort]' && avs-run demo/demo.mp4" in readme
