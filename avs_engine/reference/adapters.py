"""Audio adapters of the image encoder (SAMA-AVS / ST-BAVA).

For encoder block i: ``p_i = shared_mlp(GELU(W_i a128 + b_i))``, added to every
token right before block i. Key layout follows the authors' checkpoints:
``prompt_generator.lightweight_mlp_{i}.0.*`` and ``prompt_generator.shared_mlp.*``.
"""

from __future__ import annotations

import torch
from torch import nn


class AudioPromptGenerator(nn.Module):
    """a128 [T, audio_dim] -> one prompt per block, each [T, embed_dim]."""

    def __init__(self, depth: int, embed_dim: int, audio_dim: int = 128, hidden_dim: int = 512) -> None:
        super().__init__()
        self.depth = depth
        for i in range(depth):
            # Sequential so the keys read lightweight_mlp_{i}.0.{weight,bias} as in the authors' files.
            setattr(self, f"lightweight_mlp_{i}", nn.Sequential(nn.Linear(audio_dim, hidden_dim), nn.GELU()))
        self.shared_mlp = nn.Linear(hidden_dim, embed_dim)

    def prompt(self, i: int, a128: torch.Tensor) -> torch.Tensor:
        """Prompt for block i. a128 [T, audio_dim] -> [T, embed_dim]."""
        return self.shared_mlp(getattr(self, f"lightweight_mlp_{i}")(a128))

    def forward(self, a128: torch.Tensor) -> list[torch.Tensor]:
        return [self.prompt(i, a128) for i in range(self.depth)]
