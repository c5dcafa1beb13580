"""Audio backbones with VGGish's interface: log-mel [T,1,96,64] -> a128 [T,128].

``VGGish`` follows torchvggish's state_dict layout (``features.{0,3,6,8,11,13}``,
``embeddings.{0,2,4}``): the conv map is flattened in NHWC order, the final
ReLU is kept, no PCA and no quantisation (docs/model.md, section 3).
``SmallAudioNet`` is a light CNN with the same interface for small models
trained here (no VGGish weights can be downloaded on these machines).
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import AudioConfig


class VGGish(nn.Module):
    def __init__(self, embed_dim: int = 128) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        # (out channels, pool after) per conv: VGG configuration "A" as used by VGGish.
        for c_out, pool in ((64, True), (128, True), (256, False), (256, True), (512, False), (512, True)):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(2, 2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, embed_dim), nn.ReLU(inplace=True),
        )

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """log_mel [T,1,96,64] -> [T,embed_dim]."""
        x = self.features(log_mel)  # [T, 512, 6, 4]
        # torchvggish flattens channels-last; its first Linear's weights expect that order.
        x = x.permute(0, 2, 3, 1).contiguous()  # [T, 6, 4, 512]
        return self.embeddings(x.flatten(1))


class SmallAudioNet(nn.Module):
    def __init__(self, embed_dim: int = 128, channels: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(nn.Linear(c_in, embed_dim), nn.ReLU(inplace=True))

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """log_mel [T,1,96,64] -> [T,embed_dim]."""
        x = self.features(log_mel).mean(dim=(2, 3))  # [T, c]
        return self.embeddings(x)


def build_audio_backbone(cfg: AudioConfig) -> nn.Module:
    if cfg.kind == "vggish":
        return VGGish(cfg.embed_dim)
    return SmallAudioNet(cfg.embed_dim, tuple(cfg.channels))
