"""The fused CUDA kernels inside a bfloat16/float16 (autocast) model, on the CPU stand-in.

The kernels run as their NumPy models (``devtools.host_emulation``) behind the real launchers, so the
launchers' dtype and shape checks see exactly what a GPU run hands them. The model is ViT-shaped (head
dim 64, one global block among windowed ones) so that the flash kernel takes its global attention.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything")

from avs_engine.backends.torch_backend import TorchRunner  # noqa: E402
from avs_engine.checks.compare import mask_iou, rel_l2  # noqa: E402
from avs_engine.config import ModelConfig  # noqa: E402
from avs_engine.exact.mixed_precision import prepare_mixed_precision  # noqa: E402
from avs_engine.exact.torch_ops import CudaRelPosAttention, use_cuda_kernels  # noqa: E402
from avs_engine.io.postprocess import logits_to_masks  # noqa: E402
from avs_engine.reference.build import build_model  # noqa: E402
from devtools.host_emulation import HostRelPosAttention, HostStbavaKernels  # noqa: E402

LOW = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def vit_shaped(seed: int):
    """128x128 input, patch 8 -> a 16x16 grid; 2 heads of 64; block 1 global, block 0 windowed."""
    cfg = ModelConfig.from_dict({"base": "tiny", "name": "vit_shaped", "encoder": {
        "img_size": 128, "patch_size": 8, "embed_dim": 128, "num_heads": 2, "depth": 2,
        "window_size": 8, "global_attn_indexes": [1], "adapter_dim": 32}})
    model = build_model(cfg, seed=seed).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # SAM initialises the rel-pos tables to zero: make the bias matter
        for blk in model.image_encoder.blocks:
            blk.attn.rel_pos_h.copy_(torch.randn(blk.attn.rel_pos_h.shape, generator=g) * 0.5)
            blk.attn.rel_pos_w.copy_(torch.randn(blk.attn.rel_pos_w.shape, generator=g) * 0.5)
    return model


def clip(config, T: int, seed: int):
    rng = np.random.default_rng(seed)
    S = config.encoder.img_size
    return rng.standard_normal((T, 3, S, S), dtype=np.float32), rng.standard_normal((T, 1, 96, 64), dtype=np.float32)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_flash_attention_under_autocast_gets_float32_tables(dtype):
    """What the torch backend builds for --precision bf16/fp16 --fused on a GPU: the SDPA attention and
    float32 norms (mixed precision), then the kernels swapped in; the encoder under autocast. The
    rel-pos tables must reach the launcher as float32 (the launcher refuses anything else)."""
    model = vit_shaped(0)
    image, log_mel = clip(model.config, 2, 1)
    with torch.inference_mode():
        a128 = model.embed_audio(torch.from_numpy(log_mel))
        ref = model.encode(torch.from_numpy(image), a128)
        prepare_mixed_precision(model)
        kernel = HostRelPosAttention()
        swapped = use_cuda_kernels(model, compute_dtype=LOW[dtype], stbava_kernels=HostStbavaKernels,
                                   relpos_kernel=kernel)
        assert swapped["global_attention"] == 1
        with torch.autocast("cpu", dtype=LOW[dtype]):
            out = model.encode(torch.from_numpy(image), a128)
    suffix = "bf16" if dtype == "bfloat16" else "f16"
    assert kernel.launches == [f"relpos_flash_attn_{suffix}_d64"]
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert rel_l2(out.numpy(), ref.numpy()) < 0.05  # low-precision matmuls over 2 blocks


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_runner_low_precision_fused_end_to_end(dtype):
    """``--precision bf16|fp16 --fused`` on the CPU stand-in: the runner with the emulated kernels
    injected runs whole clips, and its masks agree with float32 at the mixed-precision tolerance."""
    image, log_mel = clip(vit_shaped(0).config, 2, 2)
    ref = TorchRunner(model=vit_shaped(0)).activate().run_clip(image, log_mel)
    kernel = HostRelPosAttention()
    runner = TorchRunner(model=vit_shaped(0), dtype=dtype, fused=True,
                         kernels=(HostStbavaKernels, kernel)).activate()
    assert runner.swapped == {"fusion_blocks": 2, "global_attention": 1}
    assert "global attention" in runner.description and "flash kernel" in runner.description
    low = runner.run_clip(image, log_mel)
    assert kernel.launches and np.isfinite(low).all()
    assert rel_l2(low, ref) < 0.05  # the mixed-precision runner's tolerance on small random models
    iou = mask_iou(logits_to_masks(low, (224, 224)), logits_to_masks(ref, (224, 224)))
    # 0.99 is the bar on vit_b; random weights here give logits of ~0.05 whose signs flip more easily
    # (measured: bf16 0.988 / 0.991, fp16 0.997 / 0.999)
    assert np.median(iou) >= 0.98, iou


INDEX_MAKERS = ("arange", "tensor", "as_tensor", "from_numpy")


def _host_index_ops(fn, monkeypatch) -> list[str]:
    """The tensor-making calls (``torch.arange``, a Python list or array made a tensor) ``fn`` makes."""
    seen: list[str] = []
    for name in INDEX_MAKERS:
        original = getattr(torch, name)

        def counting(*args, _name=name, _original=original, **kwargs):
            seen.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(torch, name, counting)
    try:
        fn()
    finally:
        monkeypatch.undo()
    return seen


@pytest.mark.parametrize("form", ["fused", "sdpa"])
def test_encoder_forward_builds_no_index_after_the_first(form, monkeypatch):
    """On a GPU an index built with ``torch.arange`` on the host costs a host-to-device copy and a
    stream sync per global block, and cannot be captured in a CUDA graph. After the first forward
    (which may build and cache its tables) the encoder's forward creates no index at all."""
    model = vit_shaped(3)
    image, log_mel = clip(model.config, 1, 4)
    with torch.inference_mode():
        prepare_mixed_precision(model)
        if form == "fused":
            use_cuda_kernels(model, compute_dtype=torch.bfloat16, relpos_kernel=HostRelPosAttention())
            assert isinstance(model.image_encoder.blocks[1].attn, CudaRelPosAttention)
        x, a128 = torch.from_numpy(image), model.embed_audio(torch.from_numpy(log_mel))

        def forward():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                model.encode(x, a128)

        forward()  # first call: tables built and kept
        assert _host_index_ops(forward, monkeypatch) == []
