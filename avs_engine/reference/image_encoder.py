"""SAM's ViT image encoder with the audio adapters (docs/model.md, section 4)."""

from __future__ import annotations

from functools import partial

import torch
from segment_anything.modeling.image_encoder import ImageEncoderViT
from torch import nn

from ..config import EncoderConfig
from .adapters import AudioPromptGenerator


class AudioAdaptedImageEncoder(ImageEncoderViT):
    """SAM ``ImageEncoderViT`` whose blocks each receive an audio prompt.

    Keys are SAM's (``patch_embed``, ``pos_embed``, ``blocks.*``, ``neck.*``)
    plus ``prompt_generator.*``.
    """

    def __init__(self, cfg: EncoderConfig, audio_dim: int = 128) -> None:
        super().__init__(
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            in_chans=3,
            embed_dim=cfg.embed_dim,
            depth=cfg.depth,
            num_heads=cfg.num_heads,
            mlp_ratio=cfg.mlp_ratio,
            out_chans=cfg.out_chans,
            qkv_bias=True,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            act_layer=nn.GELU,
            use_abs_pos=True,
            use_rel_pos=True,
            rel_pos_zero_init=True,
            window_size=cfg.window_size,
            global_attn_indexes=tuple(cfg.global_attn_indexes),
        )
        self.prompt_generator = AudioPromptGenerator(cfg.depth, cfg.embed_dim, audio_dim, cfg.adapter_dim)

    def forward(self, image: torch.Tensor, a128: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """image [T,3,S,S] (normalised), a128 [T,A] -> enc [T,C,S/p,S/p]. Frames are independent."""
        x = self.patch_embed(image)  # [T, G, G, D]
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for i, blk in enumerate(self.blocks):
            p = self.prompt_generator.prompt(i, a128)  # [T, D]
            x = blk(x + p[:, None, None, :])
        return self.neck(x.permute(0, 3, 1, 2))
