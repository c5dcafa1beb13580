"""Build an ST-BAVA model from a preset, a config file or a ModelConfig."""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import ModelConfig, resolve
from .audio_backbone import build_audio_backbone
from .fusion import build_fusion_layers
from .image_encoder import AudioAdaptedImageEncoder
from .mask_decoder import build_mask_decoder
from .model import STBAVA


def build_model(config: str | Path | ModelConfig, device: str | torch.device = "cpu", seed: int | None = None) -> STBAVA:
    """A model in eval mode.

    ``device="meta"`` allocates nothing (vit_h: 2.5 GB saved): load weights
    afterwards with :func:`load_checkpoint` (``assign=True``), so a checkpoint
    is never held twice. ``seed`` fixes the random initialisation.
    """
    cfg = resolve(config)
    if seed is not None:
        torch.manual_seed(seed)
    with torch.device(device):
        model = STBAVA(
            cfg,
            audio_backbone=build_audio_backbone(cfg.audio),
            image_encoder=AudioAdaptedImageEncoder(cfg.encoder, cfg.audio.embed_dim),
            layers=build_fusion_layers(cfg.fusion),
            mask_decoder=build_mask_decoder(cfg.decoder, cfg.fusion.dim),
        )
    return model.eval()
