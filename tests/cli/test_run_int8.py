"""avs-run --precision int8 end to end, its refusals (one line each), and avs-bench's int8 rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from avs_engine.cli.run import main as run_main
from avs_engine.models import DEMO_WEIGHTS


@pytest.fixture(scope="module")
def demo_int8(tmp_path_factory):
    from tests.int8_graphs import demo_int8 as export

    return export(tmp_path_factory.getbasetemp())[0]


def test_run_int8_end_to_end(tmp_path, demo_int8, sample_video):
    common = [str(sample_video), "--quiet", "--no-overlay", "--engine-dir", str(demo_int8), "--threads", "1"]
    f = CliRunner().invoke(run_main, common + ["--project", str(tmp_path / "f")])
    q = CliRunner().invoke(run_main, common + ["--precision", "int8", "--project", str(tmp_path / "q")])
    assert f.exit_code == 0, f.output
    assert q.exit_code == 0, q.output
    assert "int8" in q.stderr.splitlines()[0]
    doc = json.loads((tmp_path / "q" / "run" / "clip" / "result.json").read_text())
    assert " int8" in doc["model"]["runner"] and "fp32: audio" in doc["model"]["runner"]
    stages = doc["model"]["compute_precision"]
    assert stages["image_encoder"].startswith("int8") and stages["audio"].startswith("float32")
    agree = []
    for i in range(1, 7):
        a = np.asarray(Image.open(tmp_path / "f" / "run" / "clip" / "masks" / f"{i:06d}.png")) > 0
        b = np.asarray(Image.open(tmp_path / "q" / "run" / "clip" / "masks" / f"{i:06d}.png")) > 0
        union = (a | b).sum()
        agree.append((a & b).sum() / union if union else 1.0)
    assert np.median(agree) >= 0.95, agree  # mask IoU INT8 vs FP32 on a random-looking generated video


@pytest.mark.parametrize("extra, words", [
    (["--backend", "torch"], "--precision int8 needs the onnxruntime backend"),
    (["--weights", str(DEMO_WEIGHTS)], "--precision int8 needs the onnxruntime backend"),
    ([], "no int8 graphs"),  # the bundled demo graphs are fp32 and fp16
])
def test_int8_refusals_are_one_line(tmp_path, sample_video, extra, words):
    r = CliRunner().invoke(run_main, [str(sample_video), "--precision", "int8", "--project", str(tmp_path), *extra])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], r.stderr
    assert not (tmp_path / "run").exists()


def test_int8_refused_on_a_gpu_provider(demo_int8):
    from avs_engine.backends.onnxruntime_backend import OnnxRuntimeRunner
    from avs_engine.errors import BackendError

    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider; the refusal is reached only where it has")
    with pytest.raises(BackendError, match="CPU provider"):
        OnnxRuntimeRunner(demo_int8, providers=["cuda"], precision="int8").activate()


def test_bench_rows_parse_int8():
    from avs_engine.bench.rows import RowSpec
    from avs_engine.errors import ConfigError

    assert RowSpec.parse("onnxruntime:int8").label == "onnxruntime:int8"
    with pytest.raises(ConfigError, match="onnxruntime backend only"):
        RowSpec.parse("torch:int8")


def test_bench_measures_an_int8_row(tmp_path, demo_int8):
    """avs-bench measures the int8 row of an fp32+int8 graph folder beside the torch reference
    (in a child process: a clean torch, as a user's run)."""
    import subprocess
    import sys

    out = tmp_path / "rep"
    r = subprocess.run([sys.executable, "-m", "avs_engine.cli.bench", "--weights", str(DEMO_WEIGHTS), "--engine-dir",
                        str(demo_int8), "--backends",
                        "torch:fp32,onnxruntime:fp32,onnxruntime:int8", "--runs", "1", "--warmup", "0", "--no-overlay",
                        "--threads", "1", "-T", "2", "--video-size", "160x96", "--out", str(out), "-q"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.with_suffix(".json").read_text())
    rows = {row["label"]: row for row in doc["rows"]}
    assert rows["onnxruntime:float32"]["status"] == "ok"
    row = rows["onnxruntime:int8"]
    assert row["status"] == "ok", row["status"]
    assert " int8" in row["runner"]
