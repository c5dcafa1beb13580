"""The tensorrt backend: refusal paths (one line each), torch-free import, and its buffer and
binding logic run end to end against a fake TensorRT + host stand-ins for CUDA.

The fake "engines" are the ONNX graphs run by ONNX Runtime on the memory the backend binds, so
these tests show that the backend binds every tensor, sets every input shape, chains the four
stages on the "device" without host copies in between, and returns what ONNX Runtime returns.
They do not show that real TensorRT or CUDA behave as documented: the ``trt`` group does.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import avs_engine
from avs_engine.backends import available_backends, create_runner
from avs_engine.errors import BackendError, ShapeError
from avs_engine.checks.trt_check import random_clip
from avs_engine.artifacts.spec import STAGE_ORDER
from tests.trt.fake_tensorrt import HostMemory, make_fake_tensorrt

REPO = Path(avs_engine.__file__).resolve().parents[1]
H100 = ("NVIDIA H100 80GB HBM3", "9.0")


def refusal(engine_dir, **kw):
    with pytest.raises(BackendError) as e:
        create_runner("tensorrt", engine_dir=engine_dir, **kw).activate()
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_import_is_torch_free():
    code = (
        "import sys\n"
        "import avs_engine.backends.tensorrt_backend, avs_engine.gpu.cuda_memory\n"
        "import avs_engine.artifacts.engine_manifest, avs_engine.artifacts.profiles, avs_engine.export.tensorrt_build\n"
        "from avs_engine.backends import available_backends\n"
        "available_backends()\n"
        "bad = [m for m in ('torch', 'torchvision', 'segment_anything', 'onnx', 'polygraphy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr


def test_no_tensorrt(engines, no_tensorrt):
    assert available_backends()["tensorrt"].startswith("not available: TensorRT is not installed here (pip install tensorrt")
    assert refusal(engines).startswith("TensorRT is not installed here (pip install tensorrt")


def test_no_gpu_here(engines, fake_trt):
    from avs_engine.gpu import cuda_memory

    try:
        n = cuda_memory.device_count()
    except BackendError:
        n = 0
    if n:
        pytest.skip("this machine has a GPU")
    assert refusal(engines).startswith("no CUDA GPU usable here (cudaGetDeviceCount: cudaError")


def test_no_gpu_reported_by_cuda(engines, fake_trt, monkeypatch):
    """The same refusal whatever the machine: cuda-python answering 'no device'."""
    from cuda.bindings import runtime as rt

    from avs_engine.gpu import cuda_memory

    class NoDevice:
        def __getattr__(self, name):
            return getattr(rt, name)

        @staticmethod
        def cudaGetDeviceCount():
            return rt.cudaError_t.cudaErrorNoDevice, 0

    monkeypatch.setattr(cuda_memory, "cudart", lambda: NoDevice())
    assert refusal(engines) == "no CUDA GPU usable here (cudaGetDeviceCount: cudaErrorNoDevice (no CUDA-capable device is detected))"


def test_wrong_manifest_refusals(engines, tmp_path, onnx_dir, monkeypatch):
    HostMemory().install(monkeypatch)
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt("10.14.1.48"))
    msg = refusal(engines)
    assert "built with TensorRT 10.13.0.35, this machine has TensorRT 10.14.1.48" in msg and "avs-export build --onnx-dir" in msg

    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt("10.13.0.35"))
    HostMemory().install(monkeypatch, gpu=("NVIDIA A100-SXM4-80GB", "8.0"))
    assert "this GPU is NVIDIA A100-SXM4-80GB (compute capability 8.0); rebuild them on this GPU" in refusal(engines)

    assert refusal(tmp_path / "nowhere") == f"{tmp_path / 'nowhere'}: engine folder not found"
    assert "no engines.json here" in refusal(onnx_dir)  # an ONNX folder without engines
    (engines / "mask_decoder.engine").write_bytes(b"x")
    assert "mask_decoder.engine: 1 bytes, the manifest says" in refusal(engines)
    assert refusal(engines, fused=True).startswith("--fused is not available with the tensorrt backend yet")


def test_corrupt_engine_is_refused(engines, fake_trt, monkeypatch):
    HostMemory().install(monkeypatch)
    size = (engines / "fusion.engine").stat().st_size
    (engines / "fusion.engine").write_bytes(b"x" * size)  # intact size, garbage inside
    msg = refusal(engines, check_hashes=False)
    assert "fusion.engine: TensorRT 10.13.0.35 cannot load this engine (engine plan file is corrupted)" in msg


@pytest.fixture
def fake_runner(engines, fake_trt, monkeypatch):
    mem = HostMemory().install(monkeypatch)
    runner = create_runner("tensorrt", engine_dir=engines).activate()
    yield runner, mem, fake_trt
    runner.deactivate()


def test_run_clip_chains_on_the_device(fake_runner, onnx_dir):
    runner, mem, trt = fake_runner
    assert runner.description == "tensorrt 10.13.0.35 fp16 on NVIDIA H100 80GB HBM3" and runner.config.name == "tiny"
    clip = random_clip(runner.config, T=3, seed=1)
    trt.calls.clear()
    got = runner.run_clip(clip["image"], clip["log_mel"])
    with create_runner("onnxruntime", engine_dir=onnx_dir, precision="fp16") as ort_runner:
        want = ort_runner.run_clip(clip["image"], clip["log_mel"])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # two copies in, one out; nothing else crosses to the host
    assert mem.copies == [("h2d", "log_mel"), ("h2d", "image"), ("d2h", "logits")]
    assert [v for c, v in trt.calls if c == "execute_async_v3"] == list(STAGE_ORDER)
    shapes = [v for c, v in trt.calls if c == "set_input_shape"]
    assert ("image_encoder", "image", (3, 3, 128, 128)) in shapes and ("mask_decoder", "sparse", (3, 2, 32)) in shapes
    # the same T again: bindings kept, not redone
    trt.calls.clear()
    runner.run_clip(clip["image"], clip["log_mel"])
    assert not [c for c, _ in trt.calls if c in ("set_input_shape", "set_tensor_address")]


def test_run_stage_and_shorter_clip(fake_runner, onnx_dir):
    runner, mem, trt = fake_runner
    clip = random_clip(runner.config, T=4, seed=2)
    runner.run_clip(clip["image"], clip["log_mel"])  # buffers sized for T=4
    short = random_clip(runner.config, T=1, seed=3)
    with create_runner("onnxruntime", engine_dir=onnx_dir, precision="fp16") as ort_runner:
        a128 = ort_runner.run("audio", {"log_mel": short["log_mel"]})["a128"]
        want = ort_runner.run_clip(short["image"], short["log_mel"])
    np.testing.assert_allclose(runner.run("audio", {"log_mel": short["log_mel"]})["a128"], a128, rtol=1e-6)
    np.testing.assert_allclose(runner.run_clip(short["image"], short["log_mel"]), want, rtol=1e-6, atol=1e-6)


def test_refusals_while_running(fake_runner):
    runner, _, _ = fake_runner
    clip = random_clip(runner.config, T=5, seed=0)
    with pytest.raises(BackendError) as e:
        runner.run_clip(clip["image"], clip["log_mel"])
    assert str(e.value).startswith("clip length T=5 is outside the T range [1, 4] of the engines in ")
    assert "--min-t 1 --opt-t 3 --max-t 5" in str(e.value)
    with pytest.raises(ShapeError, match="'log_mel': expected shape \\[2, 1, 96, 64\\], got \\[3"):
        runner.run_clip(clip["image"][:2], clip["log_mel"][:3])
    with pytest.raises(BackendError, match="T=5 is outside"):
        runner.run("audio", {"log_mel": clip["log_mel"]})


def test_cuda_graph_captured_once_per_T(engines, fake_trt, monkeypatch, onnx_dir):
    mem = HostMemory().install(monkeypatch)
    with create_runner("tensorrt", engine_dir=engines, cuda_graph=True) as runner:
        assert runner.description.endswith("+cuda-graph")
        clip = random_clip(runner.config, T=2, seed=5)
        first = runner.run_clip(clip["image"], clip["log_mel"])
        again = runner.run_clip(clip["image"], clip["log_mel"])
        assert (mem.graph_captures, mem.graph_launches) == (1, 2)
        np.testing.assert_array_equal(first, again)
        other = random_clip(runner.config, T=3, seed=6)
        runner.run_clip(other["image"], other["log_mel"])  # a longer clip: buffers grow, graphs recaptured
        runner.run_clip(clip["image"], clip["log_mel"])
        assert mem.graph_captures == 3
        with create_runner("onnxruntime", engine_dir=onnx_dir, precision="fp16") as ort_runner:
            np.testing.assert_allclose(first, ort_runner.run_clip(clip["image"], clip["log_mel"]), rtol=1e-6, atol=1e-6)
