"""avs-run on the ONNX Runtime backend gives the torch backend's masks."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from PIL import Image

from avs_engine.cli.run import main as run_main


def test_onnxruntime_backend_matches_torch(tmp_path, tiny_bundle, tiny_engine, sample_video):
    """The test run's tiny export (``avs-export onnx --config tiny --seed 0``: tiny_bundle's weights) against
    the torch route on those weights."""
    graphs = tiny_engine
    common = [str(sample_video), "--quiet", "--no-overlay"]
    t = CliRunner().invoke(run_main, common + ["--weights", str(tiny_bundle), "--project", str(tmp_path / "t")])
    o = CliRunner().invoke(run_main, common + ["--backend", "onnxruntime", "--engine-dir", str(graphs), "--project", str(tmp_path / "o")])
    assert t.exit_code == 0, t.output
    assert o.exit_code == 0, o.output
    for i in range(1, 7):
        a = np.asarray(Image.open(tmp_path / "t" / "run" / "clip" / "masks" / f"{i:06d}.png"))
        b = np.asarray(Image.open(tmp_path / "o" / "run" / "clip" / "masks" / f"{i:06d}.png"))
        # identical up to pixels whose logit is within float rounding of 0
        assert (a == b).mean() > 0.9995, i
    doc = json.loads((tmp_path / "o" / "run" / "clip" / "result.json").read_text())
    assert doc["model"]["backend"] == "onnxruntime"


def test_onnxruntime_needs_engine_dir_for_other_weights(tmp_path, sample_video, tiny_bundle):
    r = CliRunner().invoke(run_main, [str(sample_video), "--backend", "onnxruntime", "--weights", str(tiny_bundle), "--project", str(tmp_path)])
    assert r.exit_code == 2 and "--engine-dir" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_tensorrt_backend_refuses_in_one_line_here(tmp_path, sample_video):
    graphs = tmp_path / "nothing"
    graphs.mkdir()
    r = CliRunner().invoke(run_main, [str(sample_video), "--backend", "tensorrt", "--engine-dir", str(graphs), "--project", str(tmp_path)])
    assert r.exit_code == 2
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error:")
