"""--fused on CUDA where the kernels cannot run: no cuda-python is one warning line when the kernels
are swapped in (activation), and the model runs the PyTorch forms, no traceback; a kernel build that
fails (NVRTC) is reported once and not tried again for the next clip, nor for a clip of another
length. The GPU is faked through ``capability=`` and injected kernel factories: nothing here needs
CUDA."""

from __future__ import annotations

import sys

import pytest
import torch

from avs_engine.errors import CudaError
from avs_engine.exact import torch_ops
from avs_engine.exact.fused_fusion import fuse_stbava
from avs_engine.exact.torch_ops import CudaAttentionOps, CudaFusedAVFusionBlock, CudaRelPosAttention, use_cuda_kernels
from avs_engine.reference import build_model

from .test_fused_fusion import inputs, make_block, randomise, rel_l2
from .test_torch_glue import sam_attention


@pytest.fixture
def no_cuda_python(monkeypatch):
    """``from cuda.bindings import driver`` raises ImportError, as without cuda-python."""
    for name in ("cuda.bindings", "cuda.bindings.driver", "cuda.bindings.nvrtc"):
        monkeypatch.setitem(sys.modules, name, None)


def _clip(model, T: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    C, G = model.config.fusion.dim, model.config.grid
    return torch.randn(T, C, G, G, generator=g), torch.randn(T, model.config.audio.embed_dim, generator=g)


def test_without_cuda_python_one_line_at_activation_then_pytorch(no_cuda_python, monkeypatch, capsys):
    with pytest.raises(ImportError):
        from cuda.bindings import driver  # noqa: F401
    monkeypatch.setattr(torch_ops, "_WARNED", set())  # the default sink prints each message once per process
    model = build_model("tiny", seed=0)
    randomise(model.layers, torch.Generator().manual_seed(1))
    fuse_stbava(model)  # what the torch backend's --fused does on any device
    clips = [_clip(model, 5, 1), _clip(model, 5, 2), _clip(model, 3, 3)]
    with torch.inference_mode():
        ref = [model.fuse(*c) for c in clips]
        swapped = use_cuda_kernels(model, capability=(9, 0))  # an sm_90 GPU, as activation asks
        out = [model.fuse(*c) for c in clips]  # three clips, one of another length
    assert swapped == {"fusion_blocks": 0, "global_attention": 0}
    assert not any(isinstance(layer, CudaFusedAVFusionBlock) for layer in model.layers)
    assert all(torch.equal(a, b) for r, o in zip(ref, out) for a, b in zip(r, o))
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: cuda-python is not installed (pip install 'cuda-python[all]>=12.8'); "
                   "the exact-algebra PyTorch forms run instead"]


def test_without_cuda_python_the_reason_is_asked_before_anything_is_built(no_cuda_python, monkeypatch):
    built = []
    monkeypatch.setattr(torch_ops, "RelPosAttention", lambda *a, **kw: built.append("flash"))
    assert torch_ops.kernels_unavailable("cuda:0", capability=(8, 0)).startswith("cuda-python is not installed")
    warnings = []
    use_cuda_kernels(build_model("tiny", seed=0), capability=(8, 0), warn=warnings.append)
    assert built == [] and len(warnings) == 1


def test_stbava_build_failure_is_reported_once_not_per_clip():
    attempts = []

    def nvrtc_fails(T, H, C):
        attempts.append((T, H, C))
        raise CudaError("cannot build temporal_attention.cu for sm_90:\nNVRTC_ERROR_COMPILATION")

    block = make_block(64, 8, torch.float32, 0)
    warnings = []
    fast = CudaFusedAVFusionBlock(block, CudaAttentionOps(nvrtc_fails, warn=warnings.append))
    with torch.inference_mode():
        for T, seed in ((5, 0), (5, 1), (5, 2), (3, 3)):  # clips of a video, the last one shorter
            args = inputs(T, 40, 64, torch.float32, seed)
            (v_ref, a_ref), (v, a) = block(*args), fast(*args)
            assert rel_l2(v, v_ref) < 1e-5 and rel_l2(a, a_ref) < 1e-5
    assert attempts == [(5, 8, 64)]
    assert len(warnings) == 1 and "NVRTC" not in warnings[0] and "cannot be built for T=5 H=8 C=64" in warnings[0]


def test_flash_build_failure_is_reported_once_not_per_clip(monkeypatch):
    attempts = []

    class Broken:
        def __init__(self, device=0):
            attempts.append(device)
            raise CudaError("cannot build relpos_flash_attn.cu for sm_90:\nNVRTC_ERROR_COMPILATION")

    monkeypatch.setattr(torch_ops, "RelPosAttention", Broken)
    attn = sam_attention(64)
    warnings = []
    fast = CudaRelPosAttention(attn, torch.float16, None, warn=warnings.append)
    with torch.inference_mode():
        for seed in range(3):
            x = torch.randn(2, 16, 16, 128, generator=torch.Generator().manual_seed(seed))
            assert torch.equal(fast(x), attn(x))
    assert attempts == [0]
    assert warnings == ["the flash attention kernel cannot be built (cannot build relpos_flash_attn.cu for sm_90:); "
                        "SAM's global attention runs in PyTorch instead"]
