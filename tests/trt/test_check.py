"""avs-export check's logic: Polygraphy + ONNX Runtime for real; the engine side either missing
(TensorRT not here) or a stand-in (ONNX Runtime named "tensorrt" per graph, the tensorrt
backend over a fake TensorRT for the chain). Real engines: the ``trt`` group."""

import json
import sys

import pytest

from avs_engine.errors import BackendError, ConfigError
from avs_engine.artifacts.engine_manifest import EngineManifest
from avs_engine.export.tensorrt_build import build_engines
from avs_engine.checks.trt_check import TOLERANCES, parse_tolerances, run_check, tolerances_for, within_tolerance
from tests.trt import graphs
from tests.trt.fake_tensorrt import HostMemory, make_fake_tensorrt

H100 = ("NVIDIA H100 80GB HBM3", "9.0")


class StandInSide:
    """Runs 'engines' as their own ONNX graphs: per graph with Polygraphy's ONNX Runtime runner,
    the chain with the tensorrt backend over the fake TensorRT."""

    version = "stand-in"

    def unavailable(self, engines: EngineManifest, T: int):
        return None

    def stage_runner(self, engines, stage):
        from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

        path = f"{engines.onnx['dir']}/{engines.engines[stage].onnx_file}"
        return OnnxrtRunner(SessionFromOnnx(path, providers=["CPUExecutionProvider"]), name="tensorrt")

    def chain_runner(self, engines):
        from avs_engine.backends.tensorrt_backend import TensorRTRunner

        return TensorRTRunner(engines.root)


@pytest.fixture
def standin(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt("10.13.0.35"))
    HostMemory().install(monkeypatch)
    return StandInSide()


def test_tolerance_parsing():
    assert parse_tolerances(["0.05", "enc:0.1"]) == {"*": 0.05, "enc": 0.1}  # Polygraphy's NAME:X
    assert parse_tolerances(["enc=0.1"]) == {"enc": 0.1}  # the older spelling
    with pytest.raises(ConfigError, match="unknown output 'masks'"):
        parse_tolerances(["masks:1"], "atol")
    with pytest.raises(ConfigError, match="not NAME:NUMBER"):
        parse_tolerances(["enc=abc"], "rtol")
    with pytest.raises(ConfigError, match=">= 0"):
        parse_tolerances(["-1"])
    t = tolerances_for("fp16", rtol={"*": 0.5}, atol={"logits": 1.0})
    assert t["logits"] == (0.5, 1.0, "elementwise") and t["enc"] == (0.5, TOLERANCES["fp16"]["enc"][1], "elementwise")
    assert tolerances_for("fp32")["a128"] == TOLERANCES["fp32"]["a128"]


def test_onnx_runtime_side_alone(onnx_dir):
    r = run_check(onnx_dir)
    assert not r.complete and r.skipped == "no engines.json found" and not r.ok
    assert r.failures() == [] and r.chain_iou is None and r.onnx_precision == "fp32"
    assert [o.output for o in r.outputs] == ["a128", "enc", "dense", "sparse", "logits"] and all(o.finite for o in r.outputs)
    lines = r.lines()
    assert "TensorRT: not run (no engines.json found)" in lines[0]
    assert lines[-1] == "INCOMPLETE: only the ONNX Runtime side ran"


def test_engines_but_no_tensorrt(onnx_dir, tmp_path, no_tensorrt):
    out = tmp_path / "e"
    build_engines(onnx_dir, out, trt=make_fake_tensorrt(), gpu=H100)
    r = run_check(engine_dir=out, T=3)
    assert r.skipped.startswith("TensorRT is not installed here") and r.T == 3 and r.engine_precision == "fp16"
    assert all(o.passed is None for o in r.outputs) and r.lines()[-1].startswith("INCOMPLETE")


def test_engines_that_match_pass(onnx_dir, tmp_path, standin):
    out = tmp_path / "e"
    build_engines(onnx_dir, out, trt=make_fake_tensorrt(), gpu=H100)
    r = run_check(engine_dir=out, engine_side=standin)  # onnx dir from engines.json, T = opt = 5
    assert r.complete and r.ok and r.T == 5 and r.tensorrt == "stand-in"
    assert all(o.passed and o.rel_l2 == 0.0 for o in r.outputs)
    assert r.chain_iou == [1.0] * 5
    assert r.lines()[-1] == "PASS" and "per-frame IoU min 1.0000" in r.lines()[-2]


def test_engines_from_other_graphs_fail(onnx_dir, tmp_path, standin):
    other = graphs.write_onnx_folder(tmp_path / "other", seed=1)  # same model config, other weights
    out = tmp_path / "e"
    build_engines(other, out, trt=make_fake_tensorrt(), gpu=H100)
    r = run_check(onnx_dir, out, T=2, engine_side=standin, min_iou=0.99)
    assert r.complete and not r.ok
    fails = r.failures()
    assert any(f.startswith("audio.a128 (") and "outside atol + rtol|ref|" in f for f in fails)
    assert r.lines()[-1] == "FAIL"
    # loose enough tolerances let the per-graph outputs pass; the chain IoU still decides
    loose = run_check(onnx_dir, out, T=2, engine_side=standin, rtol={"*": 1e9}, atol={"*": 1e9}, min_iou=0.0)
    assert all(o.passed for o in loose.outputs) and loose.ok


def test_argument_and_model_errors(onnx_dir, tmp_path):
    with pytest.raises(ConfigError, match="--onnx-dir.*--engine-dir"):
        run_check()
    with pytest.raises(ConfigError, match="reference"):
        run_check(onnx_dir, reference="fp64")
    with pytest.raises(BackendError, match="engine folder not found"):
        run_check(onnx_dir, tmp_path / "nope")
    out = tmp_path / "e"
    build_engines(onnx_dir, out, trt=make_fake_tensorrt(), gpu=H100)
    m = json.loads((out / "engines.json").read_text())
    m["config"]["fusion"]["depth"] = 7
    (out / "engines.json").write_text(json.dumps(m))
    with pytest.raises(BackendError, match="built for another model config"):
        run_check(onnx_dir, out)


def test_tolerance_is_elementwise_as_documented():
    """|got - ref| <= atol + rtol |ref| for every element: one element outside fails, even when the
    mean absolute and mean relative errors are both far inside (what Polygraphy's "mean" would pass)."""
    import numpy as np

    ref = np.linspace(-4, 4, 10001).astype(np.float32)
    got = ref.copy()
    got[5000] += 0.5  # ref 0 there: allowed 1e-2, off by 50x
    ok, worst, outside = within_tolerance(got, ref, rtol=5e-2, atol=1e-2)
    assert not ok and outside == 1 and abs(worst - 50) < 1e-6
    assert np.abs(got - ref).mean() < 1e-2  # the mean error alone would pass
    got = ref * (1 + 4e-2)  # relative error 4% everywhere: inside rtol 5% (plus atol)
    ok, worst, outside = within_tolerance(got, ref, rtol=5e-2, atol=1e-2)
    assert ok and outside == 0 and worst < 1
    got[3] = np.nan
    assert within_tolerance(got, ref, 5e-2, 1e-2)[:3:2] == (False, 1)
    assert within_tolerance(ref, ref, 0.0, 0.0) == (True, 0.0, 0)
