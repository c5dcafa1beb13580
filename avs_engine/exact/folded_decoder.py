"""SAM's mask-decoder cross attention with the redundant work removed.

The decoder's two-way transformer attends between a handful of tokens
(J = 1 IoU + 4 mask + 2 sparse = 7) and the G*G image tokens (4096), both
ways. SAM's ``Attention`` projects all 4096 image tokens to queries or to
keys and values, splits heads (transposes of [T, 4096, 128]) and projects the
result back. With so few tokens on the other side, the same function costs
far less when the projections are folded into the tokens (the algebra
used for the ST-BAVA block, docs/graphs.md). Notation: H heads of width d, ``W_q``,
``W_k``, ``W_v`` [D, C] and ``W_o`` [C, D] with D = H*d, scale = d^-1/2.

- Few keys (image tokens attend to the tokens): scores
  ``x_n . (W_q,h^T k_j,h) * scale + b_q,h . k_j,h * scale`` -- one
  [N, C] x [C, H*J] product; the output ``sum_j p_hnj W_o,h v_j,h + b_o`` is a
  second [N, H*J] x [H*J, C] product with the values already passed through
  the output projection.
- Few queries (tokens attend to the image): scores
  ``k_n . (W_k,h^T q_i,h) * scale``; the key-bias term ``q_i,h . b_k,h`` is the
  same for every key and drops out of the softmax. The weights sum to one, so
  the raw values are averaged first ([H*I, N] x [N, C]) and projected after.

Per two-way layer on [T, 4096, 256] image tokens (vit_b/h decoder, D = 128):
about 2.3 GFLOP at T = 5 instead of 5.4, and no head transposes of image-sized
tensors. :func:`fold_decoder_attention` swaps the modules in; the parameters
stay SAM's (same objects, same state_dict keys).
"""

from __future__ import annotations

import torch
from segment_anything.modeling.transformer import Attention
from torch import nn


class FoldedAttention(Attention):
    """Same function as SAM's ``Attention`` (q [B,Nq,C], k [B,Nk,C], v [B,Nk,C] -> [B,Nq,C]).

    Folds whichever side is short (fewer than ``d`` tokens per head, so that the
    folded matrices are smaller than the projections they replace); equal
    lengths (the tokens' self attention) run SAM's own order of operations.
    """

    def __init__(self, attn: Attention) -> None:
        nn.Module.__init__(self)  # not Attention.__init__: adopt attn's parameters, make none
        self.embedding_dim = attn.embedding_dim
        self.internal_dim = attn.internal_dim
        self.num_heads = attn.num_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj

    @property
    def head_dim(self) -> int:
        return self.internal_dim // self.num_heads

    def branch(self, nq: int, nk: int) -> str:
        """Which form runs for ``nq`` queries over ``nk`` keys: few_keys, few_queries or plain."""
        if nk < nq and nk * self.num_heads < self.internal_dim:
            return "few_keys"
        if nq < nk and nq * self.num_heads < self.internal_dim:
            return "few_queries"
        return "plain"

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        branch = self.branch(q.shape[1], k.shape[1])  # static lengths: a Python choice, also when exporting
        if branch == "few_keys":
            return self.few_keys(q, k, v)
        if branch == "few_queries":
            return self.few_queries(q, k, v)
        return super().forward(q, k, v)

    def few_keys(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q [B,N,C] (many), k, v [B,J,C] (few) -> [B,N,C]."""
        B, J, _ = k.shape
        H, d = self.num_heads, self.head_dim
        C = q.shape[-1]
        scale = d**-0.5
        kh = self.k_proj(k).view(B, J, H, d)
        m = torch.einsum("hdc,bjhd->bchj", self.q_proj.weight.view(H, d, C), kh).reshape(B, C, H * J) * scale
        beta = torch.einsum("hd,bjhd->bhj", self.q_proj.bias.view(H, d), kh).reshape(B, 1, H * J) * scale
        p = torch.softmax((torch.matmul(q, m) + beta).view(B, -1, H, J), dim=-1)  # [B, N, H, J]
        vh = self.v_proj(v).view(B, J, H, d)
        c_out = self.out_proj.weight.shape[0]
        vo = torch.einsum("ohd,bjhd->bhjo", self.out_proj.weight.view(c_out, H, d), vh).reshape(B, H * J, c_out)
        return torch.matmul(p.reshape(B, -1, H * J), vo) + self.out_proj.bias

    def few_queries(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q [B,I,C] (few), k, v [B,N,C] (many) -> [B,I,C]."""
        B, I, _ = q.shape
        H, d = self.num_heads, self.head_dim
        C = k.shape[-1]
        qh = self.q_proj(q).view(B, I, H, d) * d**-0.5
        m = torch.einsum("hdc,bihd->bchi", self.k_proj.weight.view(H, d, C), qh).reshape(B, C, H * I)
        p = torch.softmax(torch.matmul(k, m).transpose(1, 2), dim=-1)  # [B, H*I, N], over the keys
        vbar = torch.matmul(p, v).view(B, H, I, C)  # attention-weighted mean of the raw values
        o = torch.einsum("hdc,bhic->bihd", self.v_proj.weight.view(H, d, C), vbar) + self.v_proj.bias.view(H, d)
        return self.out_proj(o.reshape(B, I, H * d))


def fold_decoder_attention(root: nn.Module) -> nn.Module:
    """Swap every SAM ``Attention`` under ``root`` for a :class:`FoldedAttention` (in place).

    Returns ``root``. Use on a copy (``export.wrappers.swap_modules``) to leave a model as it is.
    """
    for name, module in list(root.named_modules()):
        for child_name, child in list(module.named_children()):
            if type(child) is Attention:
                setattr(module, child_name, FoldedAttention(child))
    return root
