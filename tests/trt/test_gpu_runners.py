"""The GPU runners' host-side decisions, without a GPU: ONNX Runtime refusing to run elsewhere than
asked when a GPU provider fails to load (a stubbed session), the provider order with TensorRT;
the tensorrt runner making its device current in the thread that drives it and freeing what it
holds when dropped (fake TensorRT + host stand-ins for CUDA); the torch runner's description of
the global attention's precision, and its refusals."""

import gc
import sys
import threading
import types

import numpy as np
import pytest

from avs_engine.backends import create_runner
from avs_engine.backends.torch_backend import describe_torch_run
from avs_engine.errors import BackendError
from avs_engine.checks.trt_check import random_clip
from tests.trt.fake_tensorrt import HostMemory, make_fake_tensorrt

H100 = ("NVIDIA H100 80GB HBM3", "9.0")


# -- 10. ONNX Runtime providers ----------------------------------------------------------------------------


def fake_onnxruntime(offered, loads):
    """``onnxruntime`` whose sessions are real CPU sessions (for the graphs' I/O) but report as active
    only the requested providers in ``loads`` (a provider that fails to load is dropped, as ONNX
    Runtime does with a log line). Records the providers each session was asked for."""
    import onnxruntime as real

    ort = types.ModuleType("onnxruntime")
    ort.__version__ = real.__version__
    ort.SessionOptions, ort.GraphOptimizationLevel = real.SessionOptions, real.GraphOptimizationLevel
    ort.get_available_providers = lambda: list(offered)
    ort.asked = []

    class InferenceSession:
        def __init__(self, path, options=None, providers=(), provider_options=()):
            ort.asked.append(list(providers))
            self._s = real.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            self._active = [p for p in providers if p in loads]

        def get_providers(self):
            return self._active

        def __getattr__(self, name):
            return getattr(self._s, name)

    ort.InferenceSession = InferenceSession
    return ort


@pytest.fixture
def demo_graphs():
    from avs_engine.models import DEMO_GRAPHS

    return DEMO_GRAPHS


def test_cuda_provider_that_fails_to_load_is_refused(monkeypatch, demo_graphs):
    ort = fake_onnxruntime(["CUDAExecutionProvider", "CPUExecutionProvider"], loads={"CPUExecutionProvider"})
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    with pytest.raises(BackendError) as e:
        create_runner("onnxruntime", engine_dir=demo_graphs, providers=["cuda"]).activate()
    msg = str(e.value)
    assert "could not start CUDAExecutionProvider and would run on CPUExecutionProvider instead" in msg and "\n" not in msg
    assert ort.asked == [["CUDAExecutionProvider", "CPUExecutionProvider"]]  # refused at the first graph


def test_tensorrt_provider_is_followed_by_cuda(monkeypatch, demo_graphs):
    offered = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    ort = fake_onnxruntime(offered, loads=set(offered))
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    r = create_runner("onnxruntime", engine_dir=demo_graphs, providers=["tensorrt"], check_hashes=False).activate()
    assert ort.asked and all(a == offered for a in ort.asked)  # nodes TensorRT does not take stay on the GPU
    assert r.device_type == "cuda" and "TensorrtExecutionProvider" in r.description
    ort2 = fake_onnxruntime(offered, loads={"CUDAExecutionProvider", "CPUExecutionProvider"})
    monkeypatch.setitem(sys.modules, "onnxruntime", ort2)
    with pytest.raises(BackendError, match="could not start TensorrtExecutionProvider and would run on "
                                           "CUDAExecutionProvider, CPUExecutionProvider instead"):
        create_runner("onnxruntime", engine_dir=demo_graphs, providers=["tensorrt"], check_hashes=False).activate()


def test_cpu_provider_unchanged(monkeypatch, demo_graphs):
    ort = fake_onnxruntime(["CPUExecutionProvider"], loads={"CPUExecutionProvider"})
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    r = create_runner("onnxruntime", engine_dir=demo_graphs, check_hashes=False).activate()
    assert r.device_type == "cpu" and all(a == ["CPUExecutionProvider"] for a in ort.asked)


# -- 11. the tensorrt runner's device and finalizer --------------------------------------------------------


@pytest.fixture
def host_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt("10.13.0.35"))
    mem = HostMemory().install(monkeypatch)
    from avs_engine.gpu import cuda_memory as cm

    mem.log = []  # (what, thread) in order
    monkeypatch.setattr(cm, "use_device", lambda device: mem.log.append((f"use_device({device})", threading.get_ident())))
    base = cm.DeviceBuffer

    class LoggedBuffer(base):
        def ensure(self, nbytes):
            moved = super().ensure(nbytes)
            if moved:
                mem.log.append(("alloc", threading.get_ident()))
            return moved

    monkeypatch.setattr(cm, "DeviceBuffer", LoggedBuffer)
    return mem


def test_runner_sets_its_device_in_the_calling_thread(engines, host_gpu):
    r = create_runner("tensorrt", engine_dir=engines, device_id=1).activate()
    clip = random_clip(r.config, 2)
    out = {}

    def work():
        out["logits"] = r.run_clip(clip["image"], clip["log_mel"])
        out["stage"] = r.run("audio", {"log_mel": clip["log_mel"]})
        out["thread"] = threading.get_ident()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    mine = [what for what, tid in host_gpu.log if tid == out["thread"]]
    assert mine and mine[0] == "use_device(1)"  # before any allocation or enqueue in that thread
    assert mine.count("use_device(1)") == 2 and "alloc" in mine  # run_clip and run both
    assert out["logits"].shape[0] == 2 and np.isfinite(out["logits"]).all()
    r.deactivate()
    assert host_gpu.log[-1][0] == "use_device(1)" and host_gpu.live == {}


def test_dropped_runner_frees_its_memory(engines, host_gpu):
    r = create_runner("tensorrt", engine_dir=engines).activate()
    clip = random_clip(r.config, 2)
    r.run_clip(clip["image"], clip["log_mel"])
    assert host_gpu.live  # device and pinned buffers held
    del r
    gc.collect()
    assert host_gpu.live == {}


# -- 12. the torch runner's global attention precision -----------------------------------------------------


def test_description_says_the_global_attention_precision():
    kernels = {"fusion_blocks": 7, "global_attention": 4}
    assert describe_torch_run("cuda:0", "float32", True, kernels, "float16") == (
        "torch cuda:0 float32 fused; ST-BAVA attention on the fused CUDA kernels; global attention float16 on the flash kernel")
    assert describe_torch_run("cuda:0", "float32", True, {"fusion_blocks": 7, "global_attention": 0}) == (
        "torch cuda:0 float32 fused; ST-BAVA attention on the fused CUDA kernels; global attention float32 in PyTorch")
    assert describe_torch_run("cuda:0", "bfloat16", True, kernels) == (
        "torch cuda:0 bfloat16 autocast fused; ST-BAVA attention on the fused CUDA kernels; global attention bfloat16 on the flash kernel")
    off = {"fusion_blocks": 0, "global_attention": 0}  # a GPU below compute capability 8.0
    assert describe_torch_run("cuda:0", "float32", True, off) == (
        "torch cuda:0 float32 fused; ST-BAVA attention in PyTorch; global attention float32 in PyTorch")
    assert describe_torch_run("cpu", "float32", True, {"fusion_blocks": 2}) == "torch cpu float32 fused; global attention float32 in PyTorch"
    assert describe_torch_run("cpu", "float16", False, {}) == "torch cpu float16 autocast"
    assert describe_torch_run("cuda", "float32", False, {}, tf32=True) == "torch cuda float32 tf32"


def test_global_attention_precision_refusals():
    with pytest.raises(BackendError, match="global_attention_dtype must be one of float32, float16, bfloat16"):
        create_runner("torch", seed=0, global_attention_dtype="fp8")
    with pytest.raises(BackendError, match="a bfloat16 model computes it in bfloat16"):
        create_runner("torch", seed=0, dtype="bfloat16", global_attention_dtype="float16")
    with pytest.raises(BackendError, match="needs fused=True on a CUDA device"):
        create_runner("torch", seed=0, device="cpu", fused=True, global_attention_dtype="float16").activate()
    r = create_runner("torch", seed=0, device="cpu", fused=True, global_attention_dtype="float32").activate()
    assert r.description == "torch cpu float32 fused; global attention float32 in PyTorch" and r.warnings == []
