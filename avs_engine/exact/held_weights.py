"""The image encoder's matrix weights held in bfloat16/float16, cast once for inference.

Under ``torch.autocast`` every ``F.linear`` and ``F.conv2d`` casts its float32
weight and bias to the low precision at each call: for vit_h that is 632 M
weights (2.5 GB read, 1.3 GB written) per encoder call, plus autocast's cast
cache rebuilt every time. Inference never updates the weights, so the casts
can happen once: :func:`hold_weights_in` swaps every ``nn.Linear`` and
``nn.Conv2d`` of the encoder for a module holding the low-precision copy,
which casts its input as autocast would and calls the same function. Autocast
then finds operands already in its dtype and casts nothing. The result is the
same computation, bit for bit: autocast casts input, weight and bias to the
same dtype before the same kernel.

What stays float32 is unchanged: the LayerNorms (float32 islands of
``mixed_precision``), the relative-position tables and positional embedding
(added to or multiplied with activations, cast per use by autocast where it
must: they are small), the residual stream, and every stage outside the
encoder. Training keeps float32 master weights and does not use this.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _held(p: torch.Tensor | None, dtype: torch.dtype) -> nn.Parameter | None:
    return None if p is None else nn.Parameter(p.detach().to(dtype), requires_grad=False)


class HeldLinear(nn.Linear):
    """``nn.Linear`` whose weight and bias are held in ``dtype``; input cast to it, output in it
    (what autocast computes). Same attribute names and state_dict keys as the module it replaces."""

    def __init__(self, lin: nn.Linear, dtype: torch.dtype) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = lin.in_features, lin.out_features
        self.weight, self.bias = _held(lin.weight, dtype), _held(lin.bias, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(self.weight.dtype), self.weight, self.bias)


class HeldConv2d(nn.Conv2d):
    """``nn.Conv2d`` with its weight and bias held in ``dtype`` (see :class:`HeldLinear`)."""

    def __init__(self, conv: nn.Conv2d, dtype: torch.dtype) -> None:
        nn.Module.__init__(self)
        for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "transposed",
                     "output_padding", "groups", "padding_mode", "_reversed_padding_repeated_twice"):
            setattr(self, name, getattr(conv, name))
        self.weight, self.bias = _held(conv.weight, dtype), _held(conv.bias, dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x.to(self.weight.dtype), self.weight, self.bias)


_HELD_FORM = {nn.Linear: HeldLinear, nn.Conv2d: HeldConv2d}


def hold_weights_in(root: nn.Module, dtype: torch.dtype) -> int:
    """Swap every ``nn.Linear`` / ``nn.Conv2d`` under ``root`` for its held form in ``dtype``, in
    place; returns how many. The float32 weights go with the old modules: use it on a model no one
    else runs in float32. Idempotent."""
    n = 0
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            form = _HELD_FORM.get(type(child))
            if form is not None:
                setattr(parent, name, form(child, dtype))
                n += 1
    return n
