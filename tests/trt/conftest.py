import sys

import pytest

from tests.trt import graphs

H100 = ("NVIDIA H100 80GB HBM3", "9.0")


@pytest.fixture(scope="session")
def onnx_dir(tmp_path_factory):
    """A hand-built stand-in for an avs-export onnx folder (tiny preset, fp32 + fp16 entries). Read-only."""
    return graphs.write_onnx_folder(tmp_path_factory.mktemp("trt") / "onnx")


@pytest.fixture
def no_tensorrt(monkeypatch):
    """``import tensorrt`` fails, as on a machine without TensorRT (this one has none anyway)."""
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)


@pytest.fixture
def fake_gpu(monkeypatch):
    """cuda_memory reports one H100 without touching CUDA (there is no driver here)."""
    from avs_engine.gpu import cuda_memory

    monkeypatch.setattr(cuda_memory, "use_device", lambda device: None)
    monkeypatch.setattr(cuda_memory, "device_info", lambda device=0: ("NVIDIA H100 80GB HBM3", "9.0"))
    return ("NVIDIA H100 80GB HBM3", "9.0")


@pytest.fixture
def engines(onnx_dir, tmp_path):
    """Fake-TensorRT engines (10.13, built for an H100, T in 1..4, opt 3) of the hand-built tiny graphs."""
    from avs_engine.artifacts.profiles import TRange
    from avs_engine.export.tensorrt_build import build_engines
    from tests.trt.fake_tensorrt import make_fake_tensorrt

    out = tmp_path / "engines"
    build_engines(onnx_dir, out, trt=make_fake_tensorrt("10.13.0.35"), gpu=H100, t_range=TRange(1, 3, 4))
    return out


@pytest.fixture
def fake_trt(monkeypatch):
    """``import tensorrt`` gives the fake TensorRT 10.13."""
    from tests.trt.fake_tensorrt import make_fake_tensorrt

    trt = make_fake_tensorrt("10.13.0.35")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return trt
