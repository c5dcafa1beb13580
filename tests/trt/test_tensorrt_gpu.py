"""Real TensorRT on a real GPU: tiny-preset engines built, run and compared with ONNX Runtime.

Run on a machine with TensorRT 10.x/11.x, cuda-python, an NVIDIA GPU and the dev install
(torch + onnx, for the tiny export):

    pytest -m trt tests/trt

Everything else under tests/trt runs without TensorRT; this group is what shows that the real
TensorRT API behaves as our code expects. Skipped (with the reason) anywhere else.
"""

from __future__ import annotations

import numpy as np
import pytest

from avs_engine.errors import BackendError


def _why_not() -> str | None:
    from avs_engine.gpu import cuda_memory
    from avs_engine.gpu.tensorrt_api import import_tensorrt

    try:
        import_tensorrt()
        cuda_memory.device_count()
    except BackendError as e:
        return f"needs TensorRT and a GPU: {e}"
    return None


WHY_NOT = _why_not()
pytestmark = [pytest.mark.trt, pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")]


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    from tests.export import helpers

    return helpers.tiny_engine(tmp_path_factory.getbasetemp())  # the real exporter: fp32 + fp16 graphs


@pytest.fixture(scope="module")
def fp16_engines(tiny_onnx, tmp_path_factory):
    from avs_engine.artifacts.profiles import TRange
    from avs_engine.export.tensorrt_build import build_engines

    out = tmp_path_factory.mktemp("trt") / "fp16"
    lines = []
    m = build_engines(tiny_onnx, out, t_range=TRange(1, 3, 5), workspace_gb=2, progress=lines.append)
    assert m.route == "strongly-typed" and m.precision == "fp16"
    assert any("saved to" in line for line in lines)
    return out


def _clip(config, T, seed=0):
    from avs_engine.checks.trt_check import random_clip

    return random_clip(config, T, seed)


def test_engines_run_like_onnx_runtime(fp16_engines, tiny_onnx):
    from avs_engine.backends import create_runner
    from avs_engine.checks.trt_check import mask_iou, rel_l2
    from avs_engine.artifacts.spec import STAGE_ORDER

    with create_runner("tensorrt", engine_dir=fp16_engines) as trt_runner, \
            create_runner("onnxruntime", engine_dir=tiny_onnx, precision="fp32") as ort_runner:
        for T in (1, 3, 5):
            clip = _clip(trt_runner.config, T, seed=T)
            got = trt_runner.run_clip(clip["image"], clip["log_mel"])
            want = ort_runner.run_clip(clip["image"], clip["log_mel"])
            assert got.shape == want.shape and np.isfinite(got).all()
            assert rel_l2(got, want) < 5e-2, T
            assert mask_iou(got[:, 0] > 0, want[:, 0] > 0).min() > 0.9, T
        # stage by stage (host round trips) equals the device-chained clip
        clip = _clip(trt_runner.config, 2, seed=7)
        a128 = trt_runner.run("audio", {"log_mel": clip["log_mel"]})["a128"]
        enc = trt_runner.run("image_encoder", {"image": clip["image"], "a128": a128})["enc"]
        fused = trt_runner.run("fusion", {"enc": enc, "a128": a128})
        logits = trt_runner.run("mask_decoder", {"enc": enc, **fused})["logits"]
        np.testing.assert_allclose(trt_runner.run_clip(clip["image"], clip["log_mel"]), logits, rtol=1e-5, atol=1e-5)
        assert list(STAGE_ORDER) == ["audio", "image_encoder", "fusion", "mask_decoder"]
        with pytest.raises(BackendError, match="T=6 is outside the T range \\[1, 5\\]"):
            big = _clip(trt_runner.config, 6)
            trt_runner.run_clip(big["image"], big["log_mel"])


def test_cuda_graph_replays_the_same(fp16_engines):
    from avs_engine.backends import create_runner

    with create_runner("tensorrt", engine_dir=fp16_engines) as plain, \
            create_runner("tensorrt", engine_dir=fp16_engines, cuda_graph=True) as graphed:
        for T in (3, 3, 2, 3):
            clip = _clip(plain.config, T, seed=T)
            np.testing.assert_allclose(graphed.run_clip(clip["image"], clip["log_mel"]),
                                       plain.run_clip(clip["image"], clip["log_mel"]), rtol=1e-5, atol=1e-5)


def test_check_passes(fp16_engines):
    from avs_engine.checks.trt_check import run_check

    r = run_check(engine_dir=fp16_engines)
    assert r.complete, r.skipped
    assert r.ok, "\n".join(r.lines())


def test_cli_build_and_check(tiny_onnx, tmp_path):
    from click.testing import CliRunner

    from avs_engine.cli.export_trt import build_cmd, check_cmd

    out = tmp_path / "fp32"
    r = CliRunner().invoke(build_cmd, ["--onnx-dir", str(tiny_onnx), "--out", str(out), "--precision", "fp32", "--max-t", "4"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(build_cmd, ["--onnx-dir", str(tiny_onnx), "--out", str(out), "--precision", "fp32", "--max-t", "4"])
    assert r.exit_code == 0 and r.output.count("up to date") == 4  # the timing cache and engines reused
    r = CliRunner().invoke(check_cmd, ["--engine-dir", str(out), "-T", "2"])
    assert r.exit_code == 0, r.output


def test_weak_fp16_route_by_version(tiny_onnx, tmp_path):
    from avs_engine.export.tensorrt_build import build_engines, parse_version
    from avs_engine.gpu.tensorrt_api import import_tensorrt

    trt = import_tensorrt()
    if parse_version(trt.__version__)[0] >= 11:
        with pytest.raises(BackendError, match="fp16-weak needs TensorRT 10"):
            build_engines(tiny_onnx, tmp_path / "weak", precision="fp16-weak")
    else:
        m = build_engines(tiny_onnx, tmp_path / "weak", precision="fp16-weak", workspace_gb=2)
        assert m.route == "weakly-typed-fp16"
        from avs_engine.checks.trt_check import run_check

        r = run_check(engine_dir=tmp_path / "weak", T=2)
        assert r.ok, "\n".join(r.lines())
