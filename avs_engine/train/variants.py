"""Ablations of the ST-BAVA fusion, as passes that swap the blocks' class
(the reference model itself stays plain).

The weights and the checkpoint layout stay the same; only the computation
changes, so a checkpoint of any variant loads strictly into the reference
model. The variant a bundle was trained as is stored in its metadata
(``fusion_variant``) and applied again by ``avs-eval``.

* ``full``: the paper's block (docs/model.md, section 6).
* ``no_temporal``: without the two temporal (``avt``) updates; the spatial
  updates and the MLPs stay.
* ``no_audio_update``: without the bidirectional half, i.e. the two
  attention updates of the audio token (temporal and spatial); the audio
  token is still refined by its MLPs, and the visual updates stay.
"""

from __future__ import annotations

import torch
from torch import nn

from ..reference.fusion import AVFusionBlock

VARIANTS = ("full", "no_temporal", "no_audio_update")


class _VariantBlock(AVFusionBlock):
    temporal = True
    audio_update = True

    def forward(self, a: torch.Tensor, v: torch.Tensor, ape: torch.Tensor, vpe: torch.Tensor):
        T, N, C = v.shape
        a = self.norm1(a + self.embed_audio(a))
        v = self.norm2(v + self.embed_vis(v))
        if self.audio_update and self.temporal:
            upd = self.avt_attention(v + vpe, (a + ape).expand(T, N, C), a.expand(T, N, C))[0]
            a = self.norm3_1(a + upd.mean(dim=1, keepdim=True))
        if self.audio_update:
            upd = self.avs_attention(v + vpe, a + ape, a)[0]
            a = self.norm3_2(a + upd.mean(dim=1, keepdim=True))
        a = self.norm4(a + self.embed_audio2(a))
        if self.temporal:
            upd = self.avt_attention((a + ape).expand(T, N, C), v + vpe, v)[0]
            v = self.norm5_1(v + upd)
        upd = self.avs_attention(a + ape, v + vpe, v)[0]
        v = self.norm5_2(v + upd)
        v = self.norm6(v + self.embed_av(v))
        return v, a


class NoTemporalBlock(_VariantBlock):
    temporal = False


class NoAudioUpdateBlock(_VariantBlock):
    audio_update = False


_CLASSES = {"full": AVFusionBlock, "no_temporal": NoTemporalBlock, "no_audio_update": NoAudioUpdateBlock}


def apply_variant(model: nn.Module, variant: str) -> nn.Module:
    """Make every fusion block of ``model`` compute ``variant`` (in place; returns the model)."""
    if variant not in _CLASSES:
        raise ValueError(f"unknown fusion variant '{variant}'; one of {', '.join(VARIANTS)}")
    for layer in model.layers:
        if not isinstance(layer, AVFusionBlock):
            raise TypeError(f"expected AVFusionBlock layers, got {type(layer).__name__}")
        layer.__class__ = _CLASSES[variant]
    return model


def variant_of(model: nn.Module) -> str:
    for name, cls in _CLASSES.items():
        if all(type(layer) is cls for layer in model.layers):
            return name
    return "mixed"
