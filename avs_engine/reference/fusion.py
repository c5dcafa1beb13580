"""ST-BAVA: spatio-temporal, bidirectional audio-visual attention (docs/model.md, section 6).

Written to compute exactly what the authors' ``AVFusionBlock`` computes: the
same modules (``nn.MultiheadAttention``; ``avt`` sequence-first so that the
sequence is time and the batch is pixels, ``avs`` batch-first so that the batch
is frames), the same order of residuals and norms, each attention module used
in both directions. Faster, algebraically equal forms are separate passes
(kernels/), never branches here.
"""

from __future__ import annotations

import torch
from segment_anything.modeling.common import MLPBlock
from torch import nn

from ..config import FusionConfig


class AVFusionBlock(nn.Module):
    """The authors' block. Subclasses switch updates off for ablations (same weights, same keys)."""

    temporal = True  # the two avt (temporal) updates
    audio_update = True  # the two attention updates of the audio token

    def __init__(self, dim: int = 256, num_heads: int = 8, mlp_dim: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.embed_vis = MLPBlock(dim, mlp_dim)
        self.embed_audio = MLPBlock(dim, mlp_dim)
        self.embed_audio2 = MLPBlock(dim, mlp_dim)
        self.embed_av = MLPBlock(dim, mlp_dim)
        self.avt_attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout)
        self.avs_attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)
        for name in ("norm1", "norm2", "norm3_1", "norm3_2", "norm4", "norm5_1", "norm5_2", "norm6"):
            setattr(self, name, nn.LayerNorm(dim))

    def forward(
        self, a: torch.Tensor, v: torch.Tensor, ape: torch.Tensor, vpe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One block over a whole clip.

        a [T,1,C] audio tokens, v [T,N,C] visual tokens (N = G*G pixels),
        ape [T,1,C] audio positional encoding, vpe [1,N,C] visual positional
        encoding. Returns (v [T,N,C], a [T,1,C]) in the authors' order.
        """
        T, N, C = v.shape
        a = self.norm1(a + self.embed_audio(a))
        v = self.norm2(v + self.embed_vis(v))

        if self.audio_update and self.temporal:
            # Temporal, audio update: for each pixel (batch), T visual queries over T audio keys.
            upd = self.avt_attention(v + vpe, (a + ape).expand(T, N, C), a.expand(T, N, C))[0]  # [T, N, C]
            a = self.norm3_1(a + upd.mean(dim=1, keepdim=True))

        if self.audio_update:
            # Spatial, audio update: per frame, N visual queries over the frame's one audio key.
            upd = self.avs_attention(v + vpe, a + ape, a)[0]  # [T, N, C]
            a = self.norm3_2(a + upd.mean(dim=1, keepdim=True))
        a = self.norm4(a + self.embed_audio2(a))

        if self.temporal:
            # Temporal, visual update: for each pixel, T audio queries over that pixel's T visual keys.
            upd = self.avt_attention((a + ape).expand(T, N, C), v + vpe, v)[0]  # [T, N, C]
            v = self.norm5_1(v + upd)

        # Spatial, visual update: per frame, one audio query over the N visual keys, added to every pixel.
        upd = self.avs_attention(a + ape, v + vpe, v)[0]  # [T, 1, C]
        v = self.norm5_2(v + upd)
        v = self.norm6(v + self.embed_av(v))
        return v, a


class NoTemporalBlock(AVFusionBlock):
    """Ablation: without the two temporal (avt) updates; the spatial updates and the MLPs stay."""

    temporal = False


class NoAudioUpdateBlock(AVFusionBlock):
    """Ablation: the audio token gets no attention update (its MLPs stay); the visual updates stay."""

    audio_update = False


BLOCKS = {"full": AVFusionBlock, "no_temporal": NoTemporalBlock, "no_audio_update": NoAudioUpdateBlock}


def build_fusion_layers(cfg: FusionConfig) -> nn.ModuleList:
    block = BLOCKS[cfg.variant]
    return nn.ModuleList(block(cfg.dim, cfg.num_heads, cfg.mlp_dim, cfg.dropout) for _ in range(cfg.depth))
