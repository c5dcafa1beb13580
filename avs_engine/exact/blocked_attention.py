"""SAM's image-encoder attention with the queries in blocks of grid rows: no full score matrix.

A global block of SAM's encoder (64x64 tokens) builds the [B*heads, N, N]
scores (N = 4096: 805 MB per frame for vit_b's 12 heads, 1.07 GB for vit_h's
16), adds the decomposed relative-position bias with two broadcast adds and
softmaxes them; ONNX Runtime keeps several tensors of that size alive at once.
Softmax works along a row, so the rows can be computed block by block: each
block of ``rows`` grid rows (``rows * W`` queries) gets its scores against all
N keys, the bias of its own rows, a softmax over complete rows and its product
with the values. Every output row is the same expression as in SAM's form
(only the order of float32 sums inside a matrix product may change); the
largest tensor is [B*heads, rows*W, N], and the blocks run one after another,
so the memory planner reuses one block's buffers for the next.

The bias is SAM's: ``rel_h[i, kh] = q_i . R_h[qh(i) - kh]`` and
``rel_w[i, kw] = q_i . R_w[qw(i) - kw]`` with the unscaled query, added over a
[B*heads, rows, W, H, W] view of the block's scores.

The blocks are a Python loop over static grid sizes, so an exported graph holds
``H / rows`` unrolled copies of the block (no ONNX Loop). Windowed attention
(14x14 windows) and small global grids stay in
:class:`~avs_engine.exact.relpos_matmul.RelPosMatmulAttention`'s folded form.
"""

from __future__ import annotations

import torch
from segment_anything.modeling.image_encoder import Attention, get_rel_pos

from .relpos_matmul import RelPosMatmulAttention

# Grid rows per query block. Chosen by benchmarks/global_attention_cpu.py on ONNX Runtime CPU
# (vit_b and vit_h shapes): see docs/graphs.md.
DEFAULT_ROWS = 8


class BlockedAttention(RelPosMatmulAttention):
    """Same function as SAM's image-encoder ``Attention``; x [B,H,W,C] -> [B,H,W,C].

    Grids that :meth:`RelPosMatmulAttention.folds` (windows, small global grids) take the folded
    form; larger ones run the queries ``rows`` grid rows at a time (module docstring).
    Adopts ``attn``'s parameters (same state_dict keys), makes none.
    """

    def __init__(self, attn: Attention, rows: int = DEFAULT_ROWS) -> None:
        super().__init__(attn)
        self.rows = rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        if not self.use_rel_pos or self.folds(H, W) or H <= self.rows:  # static sizes: a Python choice
            return super().forward(x)
        heads, N = self.num_heads, H * W
        qkv = self.qkv(x).reshape(B, N, 3, heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.reshape(3, B * heads, N, -1).unbind(0)  # [B*heads, N, d] each
        d = q.shape[-1]
        Rh = get_rel_pos(H, H, self.rel_pos_h)  # [H, H, d]: R_h[qh - kh]
        Rw = get_rel_pos(W, W, self.rel_pos_w)  # [W, W, d]
        k_t = k.transpose(-2, -1)  # [B*heads, d, N]
        outs = []
        for r0 in range(0, H, self.rows):
            r1 = min(H, r0 + self.rows)
            qb = q[:, r0 * W : r1 * W]  # [B*heads, n, d], n = (r1 - r0) * W
            r_q = qb.reshape(-1, r1 - r0, W, d)
            rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh[r0:r1])  # [B*heads, rows, W, H]
            rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw)  # [B*heads, rows, W, W]
            attn = (qb * self.scale) @ k_t  # [B*heads, n, N]
            attn = attn.view(-1, r1 - r0, W, H, W) + rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
            attn = attn.view(-1, (r1 - r0) * W, N).softmax(dim=-1)
            outs.append(attn @ v)  # [B*heads, n, d]
        out = torch.cat(outs, dim=1)  # [B*heads, N, d]
        out = out.view(B, heads, H, W, d).permute(0, 2, 3, 1, 4).reshape(B, H, W, heads * d)
        return self.proj(out)
