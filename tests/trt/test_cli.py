"""avs-export build / check as commands: arguments, one-line errors, exit codes."""

import json
import sys

import pytest
from click.testing import CliRunner

from avs_engine.cli.export_trt import EXIT_FAIL, EXIT_INCOMPLETE, EXIT_USAGE, build_cmd, check_cmd
from tests.trt.fake_tensorrt import make_fake_tensorrt


def invoke(cmd, args):
    return CliRunner().invoke(cmd, [str(a) for a in args], catch_exceptions=False)


def error_line(result):
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_help_is_the_docstring():
    r = invoke(build_cmd, ["--help"])
    assert r.exit_code == 0 and "Build TensorRT engines" in r.output and "fp16 by default, or fp32" in r.output and "--min-t" in r.output and "--weak-typing" in r.output
    r = invoke(check_cmd, ["--help"])
    assert r.exit_code == 0 and "Compare the TensorRT engines with the ONNX graphs" in r.output and "--atol" in r.output


def test_build_without_tensorrt(onnx_dir, tmp_path, no_tensorrt):
    r = invoke(build_cmd, ["--onnx-dir", onnx_dir, "--out", tmp_path / "e"])
    assert r.exit_code == EXIT_USAGE
    assert error_line(r).startswith("error: TensorRT is not installed here (pip install tensorrt -- TensorRT 10.x or 11.x")


@pytest.mark.parametrize("args,msg", [
    (["--min-t", "4", "--opt-t", "2"], "error: T range must satisfy 1 <= min-t <= opt-t <= max-t <= 64, got min-t=4 opt-t=2 max-t=8"),
    (["--max-t", "100"], "max-t=100"),
    (["--precision", "int8"], None),
    (["--workspace-gb", "0"], None),
])
def test_build_argument_errors(onnx_dir, no_tensorrt, args, msg):
    r = invoke(build_cmd, ["--onnx-dir", onnx_dir, *args])
    assert r.exit_code == EXIT_USAGE
    if msg:
        assert msg in error_line(r)


def test_build_missing_folder(tmp_path, no_tensorrt):
    r = invoke(build_cmd, ["--onnx-dir", tmp_path / "none"])
    assert r.exit_code == EXIT_USAGE and error_line(r) == f"error: {tmp_path / 'none'}: engine folder not found"
    r = invoke(build_cmd, ["--onnx-dir", tmp_path])
    assert r.exit_code == EXIT_USAGE and "no manifest.json here" in error_line(r)


def test_build_with_fake_tensorrt(onnx_dir, tmp_path, monkeypatch, fake_gpu):
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt("11.0.0.114"))
    out = tmp_path / "e"
    r = invoke(build_cmd, ["--onnx-dir", onnx_dir, "--out", out, "--max-t", "6"])
    assert r.exit_code == 0, r.stderr
    assert r.output.splitlines()[0] == ("TensorRT 11.0.0.114 on NVIDIA H100 80GB HBM3 (compute capability 9.0): strongly-typed, "
                                        "fp16 graphs -> fp16 engines, T in [1, 6] (opt 5)")
    assert json.loads((out / "engines.json").read_text())["t_range"] == [1, 5, 6]
    r = invoke(build_cmd, ["--onnx-dir", onnx_dir, "--out", out, "--precision", "fp16-weak"])
    assert r.exit_code == EXIT_USAGE and "fp16-weak needs TensorRT 10" in error_line(r)


def test_check_exit_codes(onnx_dir):
    r = invoke(check_cmd, ["--onnx-dir", onnx_dir])
    assert r.exit_code == EXIT_INCOMPLETE
    assert "INCOMPLETE: only the ONNX Runtime side ran" in r.output and "mask_decoder  logits" in r.output
    assert error_line(r) == "error: TensorRT side not run: no engines.json found"
    r = invoke(check_cmd, ["--onnx-dir", onnx_dir, "--json", "-T", "1"])
    assert r.exit_code == EXIT_INCOMPLETE and json.loads(r.stdout)["T"] == 1
    r = invoke(check_cmd, ["--onnx-dir", onnx_dir, "--atol", "masks=1"])
    assert r.exit_code == EXIT_USAGE and "unknown output 'masks'" in error_line(r)
    r = invoke(check_cmd, [])
    assert r.exit_code == EXIT_USAGE and "--onnx-dir" in error_line(r)
    assert EXIT_FAIL == 1
