"""``TorchRunner(compile=True)``: torch.compile of the encoder blocks, refused in one line where it cannot run."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from avs_engine.backends.torch_backend import TorchRunner  # noqa: E402
from avs_engine.checks.compare import rel_l2  # noqa: E402
from avs_engine.errors import BackendError  # noqa: E402
from avs_engine.exact import compiled_blocks  # noqa: E402
from avs_engine.reference.build import build_model  # noqa: E402


def test_no_cpp_compiler_is_one_line(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(compiled_blocks.shutil, "which", lambda name: None)
    with pytest.raises(BackendError, match=r"^--compile: torch.compile on the CPU needs a C\+\+ compiler") as e:
        TorchRunner(model=build_model("tiny", seed=0), compile=True).activate()
    assert "\n" not in str(e.value)


def test_cuda_without_triton_is_refused(monkeypatch):
    import torch.utils._triton as triton_probe

    monkeypatch.setattr(triton_probe, "has_triton", lambda: False)
    assert compiled_blocks.compile_unavailable(torch, torch.device("cuda")) == \
        "torch.compile on CUDA needs Triton (pip install triton)"


def test_blocks_holding_raw_kernels_stay_eager():
    enc = build_model("tiny", seed=0).image_encoder

    class RawKernelAttention(torch.nn.Module):
        launches_raw_kernels = True

    enc.blocks[1].attn = RawKernelAttention()
    assert compiled_blocks.compile_encoder_blocks(enc) == len(enc.blocks) - 1
    assert enc.blocks[1]._compiled_call_impl is None and enc.blocks[0]._compiled_call_impl is not None


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_compiled_encoder_gives_the_eager_logits(dtype):
    """Compiling takes one to two minutes per precision on 2 cores (inductor's C++ build)."""
    rng = np.random.default_rng(31)
    S = build_model("tiny", seed=9).config.encoder.img_size
    image = rng.standard_normal((2, 3, S, S), dtype=np.float32)
    log_mel = rng.standard_normal((2, 1, 96, 64), dtype=np.float32)
    eager = TorchRunner(model=build_model("tiny", seed=9), dtype=dtype).activate().run_clip(image, log_mel)
    r = TorchRunner(model=build_model("tiny", seed=9), dtype=dtype, compile=True).activate()
    assert r.compiled_blocks == len(r.model.image_encoder.blocks) and "compiled (torch.compile)" in r.description
    out = r.run_clip(image, log_mel)
    # fused kernels reorder float sums: float32 to rounding, bf16 within its own rounding of the activations
    assert rel_l2(out, eager) < (1e-5 if dtype == "float32" else 2e-2)
