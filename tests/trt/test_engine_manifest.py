"""engines.json: written by the build, read back, and the rules that refuse engines that cannot run here."""

import json
import shutil

import pytest

from avs_engine.errors import BackendError
from avs_engine.artifacts.engine_manifest import (
    FORMAT, MANIFEST_NAME, RuntimeInfo, check_clip_length, check_runtime, locate, read_engine_manifest, stale_engines,
)
from avs_engine.artifacts.graph_manifest import read_manifest
from avs_engine.artifacts.profiles import TRange
from avs_engine.export.tensorrt_build import build_engines
from avs_engine.artifacts.spec import STAGE_ORDER
from tests.trt.fake_tensorrt import make_fake_tensorrt

H100 = ("NVIDIA H100 80GB HBM3", "9.0")


@pytest.fixture
def built(onnx_dir, tmp_path):
    out = tmp_path / "engines"
    build_engines(onnx_dir, out, trt=make_fake_tensorrt("10.13.0.35"), gpu=H100, t_range=TRange(1, 5, 8))
    return out


def one_line(e):
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_written_manifest_records_what_and_for_what(built, onnx_dir):
    m = read_engine_manifest(built)
    onnx = read_manifest(onnx_dir)
    assert m.format == FORMAT and m.tensorrt == "10.13.0.35"
    assert m.gpu == {"name": H100[0], "compute_capability": "9.0"}
    assert m.t_range == [1, 5, 8] and m.precision == "fp16" and m.route == "strongly-typed"
    assert m.onnx["dir"] == str(onnx_dir) and len(m.onnx["manifest_sha256"]) == 64 and m.onnx["precision"] == "fp16"
    assert m.config == onnx.config and m.model_config().name == "tiny"
    for stage in STAGE_ORDER:
        e = m.engines[stage]
        assert e.onnx_sha256 == onnx.graph("fp16", stage).onnx.sha256
        assert (built / e.file).stat().st_size == e.bytes
        assert e.profile and all(len(v) == 3 for v in e.profile.values())
    assert m.engines["image_encoder"].profile["image"] == [[1, 3, 128, 128], [5, 3, 128, 128], [8, 3, 128, 128]]
    assert m.build["workspace_bytes"] == 8 << 30
    assert (built / "timing.cache").is_file()
    assert stale_engines(m, {s: onnx.graph("fp16", s).onnx.sha256 for s in STAGE_ORDER}) == []
    assert stale_engines(m, {s: "other" for s in STAGE_ORDER}) == list(STAGE_ORDER)


def test_locate_accepts_the_onnx_folder(onnx_dir, tmp_path):
    d = tmp_path / "onnx"
    shutil.copytree(onnx_dir, d)
    build_engines(d, trt=make_fake_tensorrt(), gpu=H100)  # default out: ONNX_DIR/tensorrt
    assert locate(d) == d / "tensorrt"
    assert read_engine_manifest(d).root == d / "tensorrt"


def test_read_refusals_are_one_line(built, tmp_path):
    with pytest.raises(BackendError, match="engine folder not found") as e:
        read_engine_manifest(tmp_path / "nope")
    one_line(e)
    with pytest.raises(BackendError, match="no engines.json") as e:
        read_engine_manifest(tmp_path)
    one_line(e)

    d = tmp_path / "copy"
    shutil.copytree(built, d)
    path = d / MANIFEST_NAME
    good = json.loads(path.read_text())

    path.write_text(json.dumps({**good, "format": "avs-engine-trt/0"}))
    with pytest.raises(BackendError, match="format"):
        read_engine_manifest(d)
    path.write_text(json.dumps({k: v for k, v in good.items() if k != "gpu"}))
    with pytest.raises(BackendError, match="malformed"):
        read_engine_manifest(d)
    path.write_text("{not json")
    with pytest.raises(BackendError, match="not valid JSON"):
        read_engine_manifest(d)
    path.write_text(json.dumps({**good, "engines": {k: v for k, v in good["engines"].items() if k != "fusion"}}))
    with pytest.raises(BackendError, match="no engine for stage.*fusion.*avs-export build"):
        read_engine_manifest(d)

    path.write_text(json.dumps(good))
    (d / "fusion.engine").write_bytes((d / "fusion.engine").read_bytes()[:-1] + b"!")  # same size, other bytes
    with pytest.raises(BackendError, match="sha256 does not match.*rebuild: avs-export build --onnx-dir") as e:
        read_engine_manifest(d)
    one_line(e)
    read_engine_manifest(d, check_hashes=False)  # sizes still checked, hashes not
    (d / "fusion.engine").unlink()
    with pytest.raises(BackendError, match="fusion.engine: engine file listed .* is missing"):
        read_engine_manifest(d)


def test_runtime_rules(built):
    m = read_engine_manifest(built)
    assert check_runtime(m, RuntimeInfo("10.13.0.35", H100[0], "9.0"), T=5) == []

    with pytest.raises(BackendError) as e:
        check_runtime(m, RuntimeInfo("10.14.1.48", H100[0], "9.0"))
    msg = one_line(e)
    assert "built with TensorRT 10.13.0.35" in msg and "has TensorRT 10.14.1.48" in msg
    assert f"rebuild them here: avs-export build --onnx-dir {m.onnx['dir']} --out {built}" in msg

    with pytest.raises(BackendError) as e:
        check_runtime(m, RuntimeInfo("10.13.0.35", "NVIDIA A100-SXM4-80GB", "8.0"))
    msg = one_line(e)
    assert "compute capability 9.0" in msg and "NVIDIA A100-SXM4-80GB (compute capability 8.0)" in msg and "rebuild" in msg

    warn = check_runtime(m, RuntimeInfo("10.13.0.35", "NVIDIA H200", "9.0"))
    assert len(warn) == 1 and "tuned on NVIDIA H100" in warn[0] and "NVIDIA H200" in warn[0]

    with pytest.raises(BackendError) as e:
        check_runtime(m, RuntimeInfo("10.13.0.35", H100[0], "9.0"), T=12)
    msg = one_line(e)
    assert "T=12 is outside the T range [1, 8]" in msg and "--max-t 12" in msg and "-T between 1 and 8" in msg
    with pytest.raises(BackendError, match="--min-t 1 --opt-t 5 --max-t 12"):
        check_clip_length(m, 12)
    check_clip_length(m, 8)


def test_rebuild_hint_keeps_the_build_options(onnx_dir, tmp_path):
    out = tmp_path / "e"
    build_engines(onnx_dir, out, precision="fp16-weak", t_range=TRange(2, 4, 6), trt=make_fake_tensorrt("10.8.0.43"), gpu=H100)
    m = read_engine_manifest(out)
    assert m.rebuild_hint() == f"avs-export build --onnx-dir {onnx_dir} --out {out} --precision fp16-weak --min-t 2 --opt-t 4 --max-t 6"
    with pytest.raises(BackendError, match="T=1 is outside the T range \\[2, 6\\].*--min-t 1 --opt-t 4 --max-t 6"):
        check_clip_length(m, 1)
