import pytest

from tests.trt import graphs


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
