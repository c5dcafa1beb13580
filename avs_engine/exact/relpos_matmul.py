"""SAM's image-encoder attention with the relative-position bias inside the score matmul.

SAM adds the decomposed bias to the [B*heads, N, N] scores with two broadcast
adds over a 5-D view (``add_decomposed_rel_pos``): two extra passes over the
largest tensor of the block. The same scores come out of one matmul with the
bias terms appended to the query and one-hot key coordinates appended to the
key (k_h, k_w: the key grid):

    [scale q_i | rel_h[i, :] | rel_w[i, :]] . [k_j | onehot(kh(j)) | onehot(kw(j))]
        = scale q_i . k_j + rel_h[i, kh(j)] + rel_w[i, kw(j)]

The one-hot products add exact zeros and ones; only the order of the float32
sum changes. It costs 2 (k_h + k_w) more multiply-adds per score and saves two
memory-bound passes. Measured with ONNX Runtime CPU on 2 cores (2026-11-26): the
tiny encoder (8x8 windows, 16x16 global) 4.32 -> 3.70 ms per frame; on vit_b's
64x64 global blocks (k_h + k_w = 128) the extra work costs more than it saves
(6.2 -> 7.0 s per frame), so :class:`RelPosMatmulAttention` keeps SAM's form
there: it folds only when ``k_h + k_w <= MAX_FOLDED_COORDS``.
"""

from __future__ import annotations

import torch
from segment_anything.modeling.image_encoder import Attention, add_decomposed_rel_pos, get_rel_pos
from torch import nn

MAX_FOLDED_COORDS = 64  # k_h + k_w up to which the bias goes into the matmul (windows, small grids)


class RelPosMatmulAttention(Attention):
    """Same function as SAM's image-encoder ``Attention`` with ``use_rel_pos``; x [B,H,W,C] -> [B,H,W,C]."""

    def __init__(self, attn: Attention) -> None:
        nn.Module.__init__(self)  # not Attention.__init__: adopt attn's parameters, make none
        self.num_heads, self.scale, self.use_rel_pos = attn.num_heads, attn.scale, attn.use_rel_pos
        self.qkv, self.proj = attn.qkv, attn.proj
        if attn.use_rel_pos:
            self.rel_pos_h, self.rel_pos_w = attn.rel_pos_h, attn.rel_pos_w

    @staticmethod
    def folds(H: int, W: int) -> bool:
        return H + W <= MAX_FOLDED_COORDS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        if not (self.use_rel_pos and self.folds(H, W)):  # static sizes: a Python choice, also when exporting
            return super().forward(x)
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, B * self.num_heads, H * W, -1).unbind(0)  # [B*heads, N, d] each
        x = self.attend(q, k, v, H, W).view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
        return self.proj(x)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, H: int, W: int) -> torch.Tensor:
        """The attention of one H x W grid per batch row, before ``proj``.

        q, k, v [B*heads, H*W, d] (q unscaled, as ``qkv`` gives it) -> [B*heads, H*W, d]. The folded form
        where :meth:`folds`, SAM's (``add_decomposed_rel_pos`` on the full scores) otherwise.
        """
        if not self.use_rel_pos:
            return ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        if not self.folds(H, W):
            attn = add_decomposed_rel_pos((q * self.scale) @ k.transpose(-2, -1), q, self.rel_pos_h, self.rel_pos_w,
                                          (H, W), (H, W))
            return attn.softmax(dim=-1) @ v
        r_q = q.reshape(-1, H, W, q.shape[-1])
        rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, get_rel_pos(H, H, self.rel_pos_h)).reshape(-1, H * W, H)
        rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, get_rel_pos(W, W, self.rel_pos_w)).reshape(-1, H * W, W)
        j = torch.arange(H * W, device=q.device)
        coords = torch.cat(
            [j[:, None] // W == torch.arange(H, device=q.device), j[:, None] % W == torch.arange(W, device=q.device)], 1
        ).to(q.dtype)  # [N, H+W]: one-hot key row and column
        q_ext = torch.cat([q * self.scale, rel_h, rel_w], dim=-1)  # [B*heads, N, d+H+W]
        k_ext = torch.cat([k, coords.expand(k.shape[0], -1, -1)], dim=-1)
        return (q_ext @ k_ext.transpose(-2, -1)).softmax(dim=-1) @ v
