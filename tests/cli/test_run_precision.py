"""avs-run's torch precisions end to end: bf16 autocast says what each stage computed in; --tf32 is refused
where it cannot apply, with one line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from avs_engine.cli.run import main as run_main

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from tests.media_factory import make_video

    v = tmp_path_factory.mktemp("media") / "clip.mp4"
    make_video(v, seconds=2.2, fps=25, size=(64, 48))
    return v


def invoke(*args):
    return CliRunner().invoke(run_main, [str(a) for a in args])


def test_bf16_result_json_says_each_stage_precision(tmp_path, tiny_bundle, video):
    r = invoke(video, "--weights", tiny_bundle, "--precision", "bf16", "--project", tmp_path, "--quiet", "--no-overlay")
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "run" / "clip" / "result.json").read_text())
    model = doc["model"]
    assert model["runner"] == "torch cpu bfloat16 autocast"
    assert model["compute_precision"]["image_encoder"].startswith("bfloat16 autocast matrix weights held in bfloat16")
    assert model["compute_precision"]["fusion"] == "float32"


def test_fp32_result_json_says_ieee_float32(tmp_path, tiny_bundle, video):
    r = invoke(video, "--weights", tiny_bundle, "--project", tmp_path, "--quiet", "--no-overlay")
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "run" / "clip" / "result.json").read_text())
    assert set(doc["model"]["compute_precision"].values()) == {"float32"}


@pytest.mark.parametrize("args, words", [
    ([], "--tf32 sets how the torch backend multiplies"),  # the bundled demo runs on onnxruntime
    (["--precision", "bf16"], "TF32 applies to float32 runs"),
    ([], "TF32 is a CUDA tensor-core format"),
])
def test_tf32_refusals_are_one_line(tmp_path, tiny_bundle, video, args, words):
    model = [] if "demo" in words or "multiplies" in words else ["--weights", tiny_bundle]
    r = invoke(video, *model, *args, "--tf32", "--project", tmp_path, "--quiet")
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
    assert not (tmp_path / "run").exists()
