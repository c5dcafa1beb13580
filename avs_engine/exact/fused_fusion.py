"""The ST-BAVA block with its redundant work removed (docs/graphs.md, "Exact-algebra
forms in the graphs").

:class:`FusedAVFusionBlock` computes the same function as the reference
:class:`~avs_engine.reference.fusion.AVFusionBlock` in eval mode. It adopts
the reference block's submodules (same parameters, same state_dict keys) and
only changes the order of operations. Notation: T frames, N pixels, C
channels, H heads of width d = C / H, ``W_q, W_k, W_v`` the rows of
``in_proj_weight``, ``W_o`` the output projection, scale = d^-1/2.

- Temporal audio update (per pixel n, queries x_tn = v_tn + vpe_n over the T
  audio keys): K_s = W_k (a_s + ape_s) + b_k is projected for T tokens, not
  T*N. Scores x_tn . (W_q,h^T K_s,h) * scale + b_q,h . K_s,h * scale: one
  [T*N, C] x [C, H*T] product plus a [H, T] bias. The pixel mean commutes with
  the values and ``out_proj``: only the mean attention weights [T, H, T] are
  needed.
- Spatial audio update: one key per query, softmax == 1: out_proj(v_proj(a)).
- Temporal visual update (queries the T audio tokens, shared by all pixels):
  scores x_sn . (W_k,h^T q_t,h); the term q_t,h . b_k,h is constant over the
  softmax axis and drops out. Values still need their projection.
- Spatial visual update (one audio query per frame over N pixels): scores
  x_tn . (W_k,h^T q_t,h), key bias drops out; the weights sum to 1, so the raw
  v is averaged first ([T, H, C]) and projected after.

Heavy [T*N, C] x [C, C] products per block: 6 (MLPs 4, value + out
projection of the temporal visual update 2) instead of the reference's ~13.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..reference.fusion import AVFusionBlock

_SUBMODULES = (
    "embed_vis", "embed_audio", "embed_audio2", "embed_av", "avt_attention", "avs_attention",
    "norm1", "norm2", "norm3_1", "norm3_2", "norm4", "norm5_1", "norm5_2", "norm6",
)


def split_in_proj(mha: nn.MultiheadAttention) -> tuple[torch.Tensor, ...]:
    """(W_q, W_k, W_v [C,C], b_q, b_k, b_v [C]) of a self-dimensioned ``nn.MultiheadAttention``."""
    assert mha._qkv_same_embed_dim, "fused block needs kdim == vdim == embed_dim"
    C = mha.embed_dim
    w = mha.in_proj_weight
    b = mha.in_proj_bias if mha.in_proj_bias is not None else w.new_zeros(3 * C)
    return w[:C], w[C : 2 * C], w[2 * C :], b[:C], b[C : 2 * C], b[2 * C :]


def out_proj(mha: nn.MultiheadAttention, x: torch.Tensor) -> torch.Tensor:
    return F.linear(x, mha.out_proj.weight, mha.out_proj.bias)


class TorchAttentionOps:
    """The three attention reductions of the folded block, in PyTorch (any device, any dtype).

    ``torch_ops.CudaAttentionOps`` has the same three methods on the CUDA kernels; the
    folded matrices (``m``, ``beta``) and values come from :class:`FusedAVFusionBlock`.
    """

    @staticmethod
    def temporal_audio(v, vpe, m, beta, values, num_heads: int) -> torch.Tensor:
        """Pixel mean of the temporal audio-update attention, before out_proj.

        v [T,N,C], vpe [1,N,C], m [C,H*T] (column h*T+s), beta [H*T], values [T,C] -> [T,C].
        """
        T, N, C = v.shape
        H = num_heads
        s = ((v + vpe).reshape(T * N, C) @ m.to(v.dtype)).view(T, N, H, T) + beta.to(v.dtype).view(H, T)
        p = torch.softmax(s, dim=-1).mean(dim=1)  # [t, h, s]: mean weights over pixels
        val = values.to(v.dtype).view(T, H, C // H)  # [s, h, d]
        return torch.einsum("ths,shd->thd", p, val).reshape(T, C)

    @staticmethod
    def temporal_visual(v, vpe, values, m, num_heads: int) -> torch.Tensor:
        """Temporal visual-update attention, before out_proj.

        v [T,N,C] (keys v + vpe), vpe [1,N,C], values [T,N,C] (projected), m [C,H*T]
        (column h*T+t) -> [T,N,C].
        """
        T, N, C = v.shape
        H = num_heads
        s = ((v + vpe).reshape(T * N, C) @ m.to(v.dtype)).view(T, N, H, T)  # [s, n, h, t]
        p = torch.softmax(s, dim=0)  # over the key frames s
        val = values.view(T, N, H, C // H)  # [s, n, h, d]
        return torch.einsum("snht,snhd->tnhd", p, val).reshape(T, N, C)

    @staticmethod
    def spatial_visual(v, vpe, m, num_heads: int) -> torch.Tensor:
        """Attention-weighted mean of the raw visual tokens per frame and head.

        v [T,N,C] (keys v + vpe, values v), vpe [1,N,C], m [T,C,H] -> vbar [T,H,C].
        """
        p = torch.softmax(torch.bmm(v + vpe, m.to(v.dtype)), dim=1)  # [t, n, h], over pixels
        return torch.bmm(p.transpose(1, 2), v)  # [t, h, C]


class FusedAVFusionBlock(nn.Module):
    """Same function as ``AVFusionBlock`` (eval mode), fewer FLOPs.

    Build with :meth:`from_block`; the parameters are the reference block's own
    (no copy), so checkpoints load into either form. ``ops`` runs the three
    attention reductions (PyTorch here; CUDA kernels in ``torch_ops``).
    """

    ops = TorchAttentionOps

    def __init__(self, block: AVFusionBlock) -> None:
        super().__init__()
        for name in _SUBMODULES:
            setattr(self, name, getattr(block, name))
        self.num_heads = block.avt_attention.num_heads
        self.dropout = block.avt_attention.dropout
        self.train(block.training)

    @classmethod
    def from_block(cls, block: AVFusionBlock) -> "FusedAVFusionBlock":
        return cls(block)

    # -- folded projections: tiny [T, C]-sized work --------------------------------------------

    def fold_temporal_audio(self, a: torch.Tensor, ape: torch.Tensor):
        """a, ape [T,1,C] -> m [C,H*T] (W_q folded into the T audio keys, column h*T+s),
        beta [H*T] (query-bias term), values [T,C] (W_v a + b_v)."""
        T, _, C = a.shape
        H = self.num_heads
        d = C // H
        wq, wk, wv, bq, bk, bv = split_in_proj(self.avt_attention)
        k = F.linear((a + ape)[:, 0], wk, bk).view(T, H, d)  # [s, h, d]: T keys, not T*N
        m = torch.einsum("hdc,shd->chs", wq.view(H, d, C), k) * d**-0.5
        beta = torch.einsum("hd,shd->hs", bq.view(H, d), k) * d**-0.5
        return m.reshape(C, H * T), beta.reshape(H * T), F.linear(a[:, 0], wv, bv)

    def fold_temporal_visual(self, ya: torch.Tensor) -> torch.Tensor:
        """ya [T,C] audio queries (a + ape) -> m [C,H*T] (W_k folded into them, column h*T+t).
        The key-bias term q . b_k is constant over the key frames and drops out."""
        T, C = ya.shape
        H = self.num_heads
        d = C // H
        wq, wk, _, bq, _, _ = split_in_proj(self.avt_attention)
        q = (F.linear(ya, wq, bq) * d**-0.5).view(T, H, d)  # [t, h, d]
        return torch.einsum("hdc,thd->cht", wk.view(H, d, C), q).reshape(C, H * T)

    def fold_spatial_visual(self, ya: torch.Tensor) -> torch.Tensor:
        """ya [T,C] -> m [T,C,H]: W_k folded into each frame's audio query (key bias drops out)."""
        T, C = ya.shape
        H = self.num_heads
        d = C // H
        wq, wk, _, bq, _, _ = split_in_proj(self.avs_attention)
        q = (F.linear(ya, wq, bq) * d**-0.5).view(T, H, d)
        return torch.einsum("hdc,thd->tch", wk.view(H, d, C), q)

    # -- the four updates, each returning the update before its residual ----------------------

    def temporal_audio_update(self, v, vpe, a, ape) -> torch.Tensor:
        """-> pixel mean of the temporal audio update [T,1,C] (the mean passed through out_proj)."""
        m, beta, values = self.fold_temporal_audio(a, ape)
        o = self.ops.temporal_audio(v, vpe, m, beta, values, self.num_heads)
        return out_proj(self.avt_attention, o.to(a.dtype))[:, None]

    def spatial_audio_update(self, a: torch.Tensor) -> torch.Tensor:
        """a [T,1,C] -> [T,1,C]: a single key per query, so softmax == 1."""
        _, _, wv, _, _, bv = split_in_proj(self.avs_attention)
        return out_proj(self.avs_attention, F.linear(a, wv, bv))

    def temporal_visual_update(self, v, vpe, ya) -> torch.Tensor:
        """v [T,N,C], vpe [1,N,C], ya [T,C] -> [T,N,C]; the value projection stays per pixel."""
        _, _, wv, _, _, bv = split_in_proj(self.avt_attention)
        values = F.linear(v, wv, bv)
        o = self.ops.temporal_visual(v, vpe, values, self.fold_temporal_visual(ya), self.num_heads)
        return out_proj(self.avt_attention, o)

    def spatial_visual_update(self, v, vpe, ya) -> torch.Tensor:
        """-> [T,1,C], added to every pixel: v_proj and out_proj after the weighted mean."""
        T, _, C = v.shape
        H = self.num_heads
        d = C // H
        vbar = self.ops.spatial_visual(v, vpe, self.fold_spatial_visual(ya), H).to(v.dtype)  # [T, H, C]
        _, _, wv, _, _, bv = split_in_proj(self.avs_attention)
        o = torch.einsum("hdc,thc->thd", wv.view(H, d, C), vbar) + bv.view(H, d)
        return out_proj(self.avs_attention, o.reshape(T, C))[:, None]

    # -- the block --------------------------------------------------------------------------------

    def forward(
        self, a: torch.Tensor, v: torch.Tensor, ape: torch.Tensor, vpe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """a [T,1,C], v [T,N,C], ape [T,1,C], vpe [1,N,C] -> (v [T,N,C], a [T,1,C])."""
        if self.training and self.dropout > 0:
            raise RuntimeError("FusedAVFusionBlock is inference-only (attention dropout): call model.eval()")
        a = self.norm1(a + self.embed_audio(a))
        v = self.norm2(v + self.embed_vis(v))
        a = self.norm3_1(a + self.temporal_audio_update(v, vpe, a, ape))
        a = self.norm3_2(a + self.spatial_audio_update(a))
        a = self.norm4(a + self.embed_audio2(a))
        ya = (a + ape)[:, 0]
        v = self.norm5_1(v + self.temporal_visual_update(v, vpe, ya))
        v = self.norm5_2(v + self.spatial_visual_update(v, vpe, ya))
        v = self.norm6(v + self.embed_av(v))
        return v, a


def fuse_stbava(model: nn.Module) -> nn.Module:
    """Swap every ``AVFusionBlock`` in ``model.layers`` for a ``FusedAVFusionBlock`` (in place).

    The parameters are shared, not copied; state_dict keys are unchanged.
    Returns the model. Blocks already fused are left alone.
    """
    layers = model.layers
    for i, layer in enumerate(layers):
        if type(layer) is AVFusionBlock:
            layers[i] = FusedAVFusionBlock.from_block(layer)
    return model
