"""Ablations of the ST-BAVA fusion (the blocks are in ``reference.fusion``; the variant is ``config.fusion.variant``).

The weights and the checkpoint layout stay the same; only the computation
changes, so a checkpoint of any variant loads strictly into any other.
:func:`apply_variant` turns a built model into another variant, config
included, so that a bundle saved afterwards runs, exports and scores as that
variant everywhere.

* ``full``: the paper's block (docs/model.md, section 6).
* ``no_temporal``: without the two temporal (``avt``) updates; the spatial
  updates and the MLPs stay.
* ``no_audio_update``: without the bidirectional half, i.e. the two
  attention updates of the audio token (temporal and spatial); the audio
  token is still refined by its MLPs, and the visual updates stay.
"""

from __future__ import annotations

import dataclasses

from torch import nn

from ..config import FUSION_VARIANTS as VARIANTS
from .fusion import BLOCKS, AVFusionBlock


def apply_variant(model: nn.Module, variant: str) -> nn.Module:
    """Make every fusion block of ``model`` compute ``variant``, and say so in ``model.config`` (in place)."""
    if variant not in BLOCKS:
        raise ValueError(f"unknown fusion variant '{variant}'; one of {', '.join(VARIANTS)}")
    for layer in model.layers:
        if not isinstance(layer, AVFusionBlock):
            raise TypeError(f"expected AVFusionBlock layers, got {type(layer).__name__}")
        layer.__class__ = BLOCKS[variant]
    cfg = model.config
    model.config = dataclasses.replace(cfg, fusion=dataclasses.replace(cfg.fusion, variant=variant))
    return model


def variant_of(model: nn.Module) -> str:
    for name, cls in BLOCKS.items():
        if all(type(layer) is cls for layer in model.layers):
            return name
    return "mixed"


__all__ = ["VARIANTS", "apply_variant", "variant_of"]
