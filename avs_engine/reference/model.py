"""The assembled ST-BAVA model. It is handed its built parts (encoder, fusion
layers, decoder, audio backbone) rather than building them itself.

Attribute names are the authors' checkpoint prefixes: ``image_encoder``,
``mask_decoder``, ``pe_layer``, ``audio_embed_layer``, ``layers``; the audio
backbone (a separate file in the authors' release) is ``audio_backbone``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from segment_anything.modeling import MaskDecoder
from segment_anything.modeling.prompt_encoder import PositionEmbeddingRandom
from torch import nn

from ..config import ModelConfig
from .image_encoder import AudioAdaptedImageEncoder
from .mask_decoder import decode_frames


class STBAVA(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        audio_backbone: nn.Module,
        image_encoder: AudioAdaptedImageEncoder,
        layers: nn.ModuleList,
        mask_decoder: MaskDecoder,
    ) -> None:
        super().__init__()
        self.config = config
        self.audio_backbone = audio_backbone
        self.image_encoder = image_encoder
        self.mask_decoder = mask_decoder
        self.pe_layer = PositionEmbeddingRandom(config.fusion.dim // 2)
        self.audio_embed_layer = nn.Linear(config.audio.embed_dim, config.fusion.dim)
        self.layers = layers

    # -- the four stages (docs/graphs.md) --------------------------------------------------

    def embed_audio(self, log_mel: torch.Tensor) -> torch.Tensor:
        """log_mel [T,1,96,64] -> a128 [T,A]."""
        return self.audio_backbone(log_mel)

    def encode(self, image: torch.Tensor, a128: torch.Tensor) -> torch.Tensor:
        """image [T,3,S,S], a128 [T,A] -> enc [T,C,G,G]."""
        return self.image_encoder(image, a128)

    def dense_pe(self) -> torch.Tensor:
        """SAM's random-Fourier positional encoding of the token grid: [1,C,G,G].

        The same maths as ``PositionEmbeddingRandom.forward`` (grid-cell centres in
        [0,1], ``2c-1``, times the Gaussian matrix, ``2*pi``, [sin, cos]), worked in
        float32 (float64 for a float64 model) and cast to the model's dtype: SAM's
        own forward builds its grid in float32 and fails on a float16/bfloat16 model.
        """
        g = self.config.grid
        gauss = self.pe_layer.positional_encoding_gaussian_matrix  # [2, C/2]
        work = torch.float64 if gauss.dtype == torch.float64 else torch.float32
        centres = (torch.arange(g, device=gauss.device, dtype=work) + 0.5) / g  # [G]
        coords = torch.stack([centres[None, :].expand(g, g), centres[:, None].expand(g, g)], dim=-1)  # [G, G, (x, y)]
        phase = 2 * math.pi * ((2 * coords - 1) @ gauss.to(work))  # [G, G, C/2]
        pe = torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1).permute(2, 0, 1)  # [C, G, G]
        return pe.unsqueeze(0).to(gauss.dtype)

    def fuse(self, enc: torch.Tensor, a128: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """enc [T,C,G,G], a128 [T,A] -> (dense [T,C,G,G], sparse [T,2,C])."""
        T, C, H, W = enc.shape
        a_in = F.normalize(self.audio_embed_layer(a128), dim=-1).unsqueeze(1)  # [T, 1, C]
        vpe = self.dense_pe().flatten(2).transpose(1, 2)  # [1, N, C]
        v = enc.flatten(2).transpose(1, 2)  # [T, N, C]
        a = a_in
        for layer in self.layers:
            v, a = layer(a, v, a_in, vpe)  # the audio positional encoding is the block-0 input
        a = a + a_in
        dense = v.transpose(1, 2).reshape(T, C, H, W)
        sparse = a.expand(T, 2, C)  # two identical sparse tokens
        return dense, sparse

    def decode(self, enc: torch.Tensor, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """-> logits [T,1,4G,4G], the sum of SAM's 3 multimask outputs."""
        return decode_frames(self.mask_decoder, enc, dense, sparse, self.dense_pe())

    # -- whole model ---------------------------------------------------------------------------

    def forward(self, image: torch.Tensor, log_mel: torch.Tensor) -> torch.Tensor:
        """image [T,3,S,S], log_mel [T,1,96,64] -> low-resolution logits [T,1,4G,4G]."""
        a128 = self.embed_audio(log_mel)
        enc = self.encode(image, a128)
        dense, sparse = self.fuse(enc, a128)
        return self.decode(enc, dense, sparse)

    def upsample(self, logits: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """logits [T,1,L,L] -> [T,1,h,w]: bilinear to the input side S, then to ``size``
        (default the config's output size), align_corners=False, as the authors do."""
        s = self.config.encoder.img_size
        size = size or (self.config.output_size, self.config.output_size)
        x = F.interpolate(logits, (s, s), mode="bilinear", align_corners=False)
        return F.interpolate(x, size, mode="bilinear", align_corners=False)
