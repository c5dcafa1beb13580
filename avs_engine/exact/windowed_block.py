"""SAM's windowed encoder block with ``qkv`` on the real tokens only and ``proj`` after the crop.

SAM's ``Block`` (window_size > 0) pads the normalised tokens with zeros to a
multiple of the window (64x64 -> 70x70 for 14x14 windows: 4900 tokens for
4096), then runs ``qkv``, the attention and ``proj`` on every padded token and
crops afterwards. A padded token is the zero vector, so its ``qkv`` row is
exactly the layer's bias; and ``proj`` works token by token, so cropping before
it drops only rows that are thrown away. This block computes

    qkv on the H x W real tokens -> pad with the bias row -> windows -> attention
    -> back to the grid, cropped -> proj

which is the same function (the padded tokens still take part in the attention
as keys and values, as in SAM) and skips 16% of the two products in every
windowed block of a 64x64 grid. The window partition and the head split are
one transpose each way instead of two.

The attention itself is :meth:`RelPosMatmulAttention.attend` (folded rel-pos
bias in the score matmul where it folds, SAM's form otherwise).
"""

from __future__ import annotations

import torch
from segment_anything.modeling.image_encoder import Attention, Block
from torch import nn

from .relpos_matmul import RelPosMatmulAttention


class WindowedBlock(nn.Module):
    """Same function as SAM's ``Block`` with ``window_size > 0``; x [B,H,W,C] -> [B,H,W,C].

    Adopts ``block``'s submodules (same state_dict keys), makes no parameters.
    """

    def __init__(self, block: Block) -> None:
        super().__init__()
        if block.window_size <= 0:
            raise ValueError("WindowedBlock takes a windowed block (window_size > 0); global blocks stay as they are")
        # registered in Block's order, so parameters() and state_dict() list the same tensors in the same order
        self.norm1 = block.norm1
        self.attn = block.attn if isinstance(block.attn, RelPosMatmulAttention) else RelPosMatmulAttention(block.attn)
        self.norm2, self.mlp = block.norm2, block.mlp
        self.window_size = block.window_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, H, W, C = x.shape
        ws, heads = self.window_size, self.attn.num_heads
        d = C // heads
        pad_h, pad_w = (ws - H % ws) % ws, (ws - W % ws) % ws
        Hp, Wp = H + pad_h, W + pad_w
        nh, nw = Hp // ws, Wp // ws

        qkv = self.attn.qkv(self.norm1(x))  # [B, H, W, 3C]: real tokens only
        if pad_h or pad_w:  # a zero token's qkv is the bias: pad with it
            bias = self._qkv_bias(qkv)
            if pad_w:
                qkv = torch.cat([qkv, bias.expand(qkv.shape[0], H, pad_w, 3 * C)], dim=2)
            if pad_h:
                qkv = torch.cat([qkv, bias.expand(qkv.shape[0], pad_h, Wp, 3 * C)], dim=1)
        # [B, nh, ws, nw, ws, 3, heads, d] -> [3, B, nh, nw, heads, ws, ws, d]: windows and heads in one move
        qkv = qkv.reshape(-1, nh, ws, nw, ws, 3, heads, d).permute(5, 0, 1, 3, 6, 2, 4, 7)
        q, k, v = qkv.reshape(3, -1, ws * ws, d).unbind(0)  # [B*nh*nw*heads, ws*ws, d] each

        o = self.attn.attend(q, k, v, ws, ws)  # [B*nh*nw*heads, ws*ws, d]
        # [B, nh, nw, heads, ws, ws, d] -> [B, nh, ws, nw, ws, heads, d] = [B, Hp, Wp, C]
        o = o.reshape(-1, nh, nw, heads, ws, ws, d).permute(0, 1, 4, 2, 5, 3, 6).reshape(-1, Hp, Wp, C)
        if pad_h or pad_w:
            o = o[:, :H, :W]
        x = x + self.attn.proj(o)
        return x + self.mlp(self.norm2(x))

    def _qkv_bias(self, like: torch.Tensor) -> torch.Tensor:
        """[3C]: the qkv of a zero token (the layer's bias, or zeros without one)."""
        bias = self.attn.qkv.bias
        return bias if bias is not None else like.new_zeros(like.shape[-1])


def is_windowed(module: nn.Module) -> bool:
    """A SAM encoder block with window attention (what :class:`WindowedBlock` replaces)."""
    return type(module) is Block and module.window_size > 0 and type(module.attn) in (Attention, RelPosMatmulAttention)
