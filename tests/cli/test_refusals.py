"""No silent surprises: an option that does not apply to the backend a command runs on is refused with one
error line naming it; --engine-dir implies its backend; the bundled demo model runs only without model options."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from avs_engine.artifacts.spec import STAGE_ORDER
from avs_engine.cli.eval import main as eval_main
from avs_engine.cli.export_trt import build_cmd, check_cmd
from avs_engine.cli.run import main as run_main
from avs_engine.models import DEMO_GRAPHS


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory):
    """A folder with an engines.json (fp16 engines, T 1..8) as avs-export build writes it; no engine files."""
    d = tmp_path_factory.mktemp("engines")
    doc = {
        "format": "avs-engine-trt/1",
        "config": json.loads((DEMO_GRAPHS / "manifest.json").read_text())["config"],
        "onnx": {"dir": str(DEMO_GRAPHS), "manifest_sha256": "0" * 64, "precision": "fp16"},
        "tensorrt": "10.13.0.35",
        "gpu": {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"},
        "t_range": [1, 5, 8],
        "precision": "fp16",
        "route": "strongly-typed",
        "engines": {s: {"stage": s, "file": f"{s}.engine", "sha256": "0" * 64, "bytes": 1, "onnx_file": f"fp16/{s}.onnx",
                        "onnx_sha256": "0" * 64} for s in STAGE_ORDER},
    }
    (d / "engines.json").write_text(json.dumps(doc))
    return d


def refused(cmd, args, *words):
    r = CliRunner().invoke(cmd, [str(a) for a in args])
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


RUN = ["v.mp4", "--quiet"]


def test_fused_needs_torch(tmp_path):
    line = refused(run_main, RUN + ["--project", tmp_path, "--backend", "onnxruntime", "--fused", "--dtype", "bfloat16", "--cuda-graph"],
                   "--fused", "torch", "onnxruntime")
    assert "Results" not in line and not (tmp_path / "run").exists()


def test_cuda_graph_needs_tensorrt(tmp_path, tiny_bundle):
    refused(run_main, RUN + ["--project", tmp_path, "--cuda-graph"], "--cuda-graph", "tensorrt")
    refused(run_main, RUN + ["--project", tmp_path, "--weights", tiny_bundle, "--cuda-graph"], "--cuda-graph", "torch backend")


@pytest.mark.parametrize("spelling", [["--precision", "bf16"], ["--dtype", "bfloat16"]])
def test_bf16_on_onnxruntime(tmp_path, spelling):
    refused(run_main, RUN + ["--project", tmp_path, *spelling], "--precision bf16", "onnxruntime", "--backend torch")


def test_engine_dir_is_looked_at_even_without_backend(tmp_path):
    refused(run_main, RUN + ["--project", tmp_path, "--precision", "fp16", "--cuda-graph", "--engine-dir", tmp_path / "nonexistent"],
            "nonexistent", "not found")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(run_main, RUN + ["--project", tmp_path, "--engine-dir", empty], "manifest.json", "engines.json")


def test_engine_dir_implies_tensorrt_and_its_rules(tmp_path, engine_dir):
    refused(run_main, RUN + ["--engine-dir", engine_dir, "--threads", "2"], "--threads", "tensorrt", "engines.json")
    refused(run_main, RUN + ["--engine-dir", engine_dir, "--device", "cpu"], "--device cpu", "GPU")
    refused(run_main, RUN + ["--engine-dir", engine_dir, "--precision", "fp32"], "--precision fp32", "fp16", "avs-export build")
    refused(run_main, RUN + ["--engine-dir", engine_dir, "--fused"], "--fused", "tensorrt")
    refused(run_main, RUN + ["--engine-dir", engine_dir, "--backend", "onnxruntime"], "--backend onnxruntime", "engines.json")


def test_engine_dir_and_model_options_conflict(tmp_path, tiny_bundle):
    refused(run_main, RUN + ["--engine-dir", DEMO_GRAPHS, "--weights", tiny_bundle], "--weights", "--engine-dir")
    refused(run_main, RUN + ["--engine-dir", DEMO_GRAPHS, "--backend", "torch"], "--engine-dir", "torch")
    refused(run_main, RUN + ["--engine-dir", DEMO_GRAPHS, "--backend", "tensorrt"], "--backend tensorrt", "avs-export build")
    refused(run_main, RUN + ["--engine-dir", DEMO_GRAPHS, "--vggish", tiny_bundle], "--vggish", "onnxruntime")
    refused(run_main, RUN + ["--backend", "tensorrt"], "--backend tensorrt", "--engine-dir")
    refused(run_main, RUN + ["--config", "vit_b"], "--config", "--weights")


def test_onnx_engine_dir_implies_onnxruntime(tmp_path, sample_video):
    r = CliRunner().invoke(run_main, [str(sample_video), "--engine-dir", str(DEMO_GRAPHS), "--project", str(tmp_path), "--quiet",
                                      "--no-overlay", "--precision", "fp16", "--threads", "1"])
    assert r.exit_code == 0, r.output
    first = r.stderr.splitlines()[0]
    assert "onnxruntime" in first and "fp16" in first and "bundled demo model" not in first
    doc = json.loads((tmp_path / "run" / "clip" / "result.json").read_text())
    assert doc["model"]["backend"] == "onnxruntime" and doc["model"]["bundled_demo"] is False


def test_eval_refusals(tmp_path):
    refused(eval_main, ["--generated", "2", "--fusion-variant", "no_temporal"], "--fusion-variant", "torch", "--backend torch")
    refused(eval_main, ["--generated", "2", "--backend", "onnxruntime", "--precision", "bf16"], "--precision bf16")
    refused(eval_main, ["--generated", "2", "--engine-dir", tmp_path / "no"], "not found")


def test_tensorrt_commands_refuse_cpu_and_weak_fp32(tmp_path):
    refused(build_cmd, ["--onnx-dir", DEMO_GRAPHS, "--out", tmp_path, "--device", "cpu"], "--device cpu", "GPU")
    refused(build_cmd, ["--onnx-dir", DEMO_GRAPHS, "--out", tmp_path, "--precision", "fp32", "--weak-typing"], "--weak-typing", "fp16")
    refused(check_cmd, ["--onnx-dir", DEMO_GRAPHS, "--device", "cpu"], "--device cpu", "GPU")


def test_global_attention_precision_needs_fused_torch(tmp_path, tiny_bundle):
    refused(run_main, RUN + ["--project", tmp_path, "--global-attention-precision", "fp16"],
            "--global-attention-precision", "--fused", "onnxruntime")
    refused(run_main, RUN + ["--project", tmp_path, "--weights", tiny_bundle, "--global-attention-precision", "bf16"],
            "--global-attention-precision", "--fused")


def test_threads_reach_the_torch_runner(tiny_bundle):
    from avs_engine.cli.common import choose_model, make_runner

    runner = make_runner(choose_model(backend=None, weights=tiny_bundle), threads=1, global_attention_precision="fp16", fused=True)
    assert runner.threads == 1 and runner.global_attention_dtype == "float16"


def test_compile_needs_torch(tmp_path, engine_dir):
    refused(run_main, RUN + ["--project", tmp_path, "--compile"], "--compile", "onnxruntime", "--backend torch")
    refused(run_main, RUN + ["--project", tmp_path, "--engine-dir", engine_dir, "--compile"], "--compile", "tensorrt")
    assert not (tmp_path / "run").exists()
