"""avs-export onnx through click's CliRunner: a real (small) export, and each bad input."""

import json

import pytest
import torch
from click.testing import CliRunner

from avs_engine.cli.export import main
from avs_engine.export.manifest import read_manifest

# Smaller than tiny (one block everywhere) so the real export here stays quick.
MINI = {"base": "tiny", "name": "mini", "encoder": {"depth": 1, "global_attn_indexes": [0]},
        "fusion": {"depth": 1}, "decoder": {"transformer_depth": 1}}


def invoke(*args):
    return CliRunner().invoke(main, ["onnx", *map(str, args)])


def assert_one_error_line(result, *words):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for w in words:
        assert w in lines[0], lines[0]


def test_export_verify_and_report(tmp_path):
    cfg = tmp_path / "mini.json"
    cfg.write_text(json.dumps(MINI))
    out = tmp_path / "engine"
    r = invoke("--config", cfg, "--seed", 0, "--out", out, "--precision", "both", "--verify-frames", 2)
    assert r.exit_code == 0, r.output
    for text in ("[4/4] mask_decoder", "parity vs PyTorch float32", "image_encoder.enc", "whole chain fp32",
                 "whole chain fp16", f"saved to {out}"):
        assert text in r.output, (text, r.output)
    m = read_manifest(out)
    assert m.model_config().name == "mini" and m.precisions == ["fp32", "fp16"]
    assert m.parity["ok"] is True and m.parity["T"] == 2
    assert m.checkpoint["random_seed"] == 0


def test_help_is_the_docstring():
    r = CliRunner().invoke(main, ["onnx", "--help"])
    assert r.exit_code == 0
    assert "Export the four graphs" in r.output and "--precision" in r.output and "--verify / --no-verify" in r.output


def test_unknown_preset(tmp_path):
    assert_one_error_line(invoke("--config", "vit_z", "--seed", 0, "--out", tmp_path / "o"), "unknown preset 'vit_z'")


def test_missing_weights_file(tmp_path):
    assert_one_error_line(invoke("--weights", tmp_path / "none.pth", "--out", tmp_path / "o"), "none.pth", "not found")


def test_checkpoint_that_does_not_fit_the_preset(tmp_path, tiny_model):
    ckpt = tmp_path / "tiny_state.pth"
    torch.save(tiny_model.state_dict(), ckpt)
    assert_one_error_line(invoke("--weights", ckpt, "--config", "vit_b", "--out", tmp_path / "o"), "tiny_state.pth", "vit_b")


def test_weights_or_seed(tmp_path, tiny_bundle):
    assert_one_error_line(invoke("--out", tmp_path / "o"), "no weights given")
    assert_one_error_line(invoke("--weights", tiny_bundle, "--seed", 1, "--out", tmp_path / "o"), "not both")


@pytest.mark.parametrize("opset", [11, 99])
def test_bad_opset(tmp_path, opset):
    assert_one_error_line(invoke("--seed", 0, "--opset", opset, "--out", tmp_path / "o"), "opset must be between")
