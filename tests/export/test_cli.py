"""avs-export onnx through click's CliRunner: a real (small) export, and each bad input."""

import json

import pytest
import torch
from click.testing import CliRunner

from avs_engine.cli.export import main
from avs_engine.artifacts.graph_manifest import read_manifest
from tests.export import helpers

def invoke(*args):
    return CliRunner().invoke(main, ["onnx", *map(str, args)])


def assert_one_error_line(result, *words):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.output
    for w in words:
        assert w in lines[0], lines[0]


def test_export_verify_and_report(tmp_path_factory):
    """The session's tiny export ran through this command (tests/export/helpers.py): its output."""
    output = helpers.tiny_export_output(tmp_path_factory.getbasetemp())
    out = helpers.tiny_engine(tmp_path_factory.getbasetemp())
    for text in ("model: tiny (random weights, seed 0)", "[4/4] mask_decoder", "parity vs PyTorch float32",
                 "image_encoder.enc", "whole chain fp32", "whole chain fp16", f"saved to {out}"):
        assert text in output, (text, output)
    assert "FAIL" not in output and not any(line.startswith("error:") for line in output.splitlines())
    m = read_manifest(out)
    assert m.precisions == ["fp32", "fp16"]
    assert m.parity["ok"] is True and m.parity["T"] == helpers.VERIFY_T and m.parity["fp16_reference"] == "rounded"
    assert m.checkpoint["random_seed"] == 0


def test_config_file_is_read(tmp_path):
    cfg = tmp_path / "bad.json"
    cfg.write_text(json.dumps({"base": "tiny", "encoder": {"depth": 2, "global_attn_indexes": [5]}}))
    assert_one_error_line(invoke("--config", cfg, "--seed", 0, "--out", tmp_path / "o"), "bad.json", "global_attn_indexes")


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
