"""Mixed precision for the torch backend and training: bfloat16/float16 compute over float32 weights.

Casting the whole model (``model.to(float16)``) puts everything in half
precision: SAM's ``LayerNorm2d`` in the encoder neck computes
``(x - u).pow(2).mean()``, which overflows float16 on a real ViT-H, and the
residual stream, the positional embeddings and the relative-position tables
lose their low bits in every block. Here the weights stay float32 and
``torch.autocast`` computes the matmuls and convolutions in the low precision;
what needs float32 stays there:

- **The image encoder** (95% of a vit_b clip's FLOPs at T = 5, 99% for vit_h)
  runs under autocast. Every ``nn.LayerNorm`` and ``LayerNorm2d`` in it is a
  float32 island (autocast off inside, input cast up): their mean and variance
  are reductions over the channels. The attention runs on
  ``scaled_dot_product_attention`` (:mod:`.sdpa_attention`), whose fused kernels
  keep the softmax's running max and sum in float32 and never write the scores.
  The residual stream stays float32: a block adds its low-precision branch to
  a float32 input, and PyTorch's type promotion keeps the sum float32.
- **Audio, fusion and mask decoder** run in float32 (autocast off): together
  under 5% of vit_b's FLOPs (under 1% for vit_h), and they hold the softmaxes
  and means over the 4096 pixels that the policy keeps float32 anyway.

:func:`stage_precision` says this per stage in words (``result.json``).
float32 is the reference and stays IEEE float32 unless TF32 is asked for
(:func:`allow_tf32`).
"""

from __future__ import annotations

import contextlib

import torch
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

from ..artifacts.spec import STAGE_ORDER

# Stages that autocast computes in the low precision; the others stay float32.
AUTOCAST_STAGES = ("image_encoder",)


class Float32LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` computed in float32 whatever autocast says (input cast up, autocast off
    inside). Adopts ``ln``'s parameters: same objects, same state_dict keys."""

    def __init__(self, ln: nn.LayerNorm) -> None:
        nn.Module.__init__(self)
        self.normalized_shape, self.eps, self.elementwise_affine = ln.normalized_shape, ln.eps, ln.elementwise_affine
        self.weight, self.bias = ln.weight, ln.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


class Float32LayerNorm2d(LayerNorm2d):
    """SAM's ``LayerNorm2d`` ([B,C,H,W], over C) in float32 whatever autocast says; adopts
    ``ln``'s parameters."""

    def __init__(self, ln: LayerNorm2d) -> None:
        nn.Module.__init__(self)
        self.weight, self.bias, self.eps = ln.weight, ln.bias, ln.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return super().forward(x.float())


_FLOAT32_FORM = {nn.LayerNorm: Float32LayerNorm, LayerNorm2d: Float32LayerNorm2d}


def keep_norms_float32(root: nn.Module) -> int:
    """Swap every LayerNorm / LayerNorm2d under ``root`` for its float32 form, in place
    (parameters and state_dict keys unchanged); returns how many. Idempotent."""
    n = 0
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            form = _FLOAT32_FORM.get(type(child))
            if form is not None:
                setattr(parent, name, form(child))
                n += 1
    return n


def prepare_mixed_precision(model: nn.Module, attention_form: str = "folded") -> dict[str, int]:
    """The model changes the policy needs (in place, parameters shared): the encoder's
    attention on SDPA (``attention_form``: ``sdpa_attention.SdpaAttention.FORMS``), its norms
    float32 islands. Returns what was swapped."""
    from .sdpa_attention import use_sdpa_attention

    return {"sdpa_attention": use_sdpa_attention(model.image_encoder, attention_form),
            "float32_norms": keep_norms_float32(model.image_encoder)}


def autocast(stage: str, device_type: str, dtype: torch.dtype | None):
    """The context a stage runs in: ``torch.autocast(device_type, dtype)`` for the autocast
    stages when ``dtype`` is a low precision, otherwise autocast off (float32)."""
    if dtype in (torch.bfloat16, torch.float16) and stage in AUTOCAST_STAGES:
        return torch.autocast(device_type, dtype=dtype)
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


def stage_precision(dtype_name: str, tf32: bool = False, held_weights: bool = False) -> dict[str, str]:
    """What each stage computes in, in words, for the run's description and result.json.
    ``held_weights``: the encoder's matrix weights are held in the low precision
    (``held_weights.hold_weights_in``: inference) rather than cast from float32 at each call."""
    fp32 = "float32 (TF32 matmuls)" if tf32 else "float32"
    if dtype_name == "float32":
        return {s: fp32 for s in STAGE_ORDER}
    weights = f"matrix weights held in {dtype_name}" if held_weights else "over float32 weights"
    low = f"{dtype_name} autocast {weights} (LayerNorm, softmax statistics, residual stream float32)"
    return {s: (low if s in AUTOCAST_STAGES else fp32) for s in STAGE_ORDER}


def allow_tf32(enabled: bool) -> None:
    """TF32 tensor-core matmuls and convolutions in float32 runs on CUDA (about 10 bits of
    mantissa in the products): off by default, so that float32 means IEEE float32."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
