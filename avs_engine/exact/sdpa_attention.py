"""SAM's image-encoder attention on ``scaled_dot_product_attention``, with no score matrix.

SAM's ``Attention`` materialises the [B*heads, N, N] scores, adds the
decomposed relative-position bias with two broadcast adds and softmaxes; for
training, autograd keeps those [B*heads, N, N] tensors for the backward pass
(vit_b, one 64x64 global block, one frame: 12 x 4096 x 4096 float32 = 805 MB
per kept tensor). The bias goes inside the score product exactly as in
``relpos_matmul`` (k_h, k_w: the key grid):

    [scale q_i | rel_h[i, :] | rel_w[i, :] | 0] . [k_j | onehot(kh(j)) | onehot(kw(j)) | 0]
        = scale q_i . k_j + rel_h[i, kh(j)] + rel_w[i, kw(j)]

and that product is handed to ``F.scaled_dot_product_attention`` with
``scale=1.0``: its fused kernels (flash / memory-efficient on CUDA, the
flash-attention CPU kernel) work through the keys in blocks with an online
softmax and keep only the output and one log-sum-exp per query row for the
backward pass. The fused kernels want the value width equal to the q/k width
(torch 2.14's CPU flash kernel refuses otherwise and SDPA falls back to its
math path, which builds the scores), so v is padded with zero columns, and
all three are padded to a multiple of 8 (the CUDA kernels' alignment); the
output is sliced back to the head width. The padding adds exact zeros.

SAM's ``get_rel_pos`` builds its gather index with ``torch.arange`` on the
host and indexes a device tensor with it: a host-to-device copy in every
block. Here the index and the one-hot key coordinates are built once per
(grid, device) and kept (:func:`rel_index`, :func:`key_coords`).

That is the *folded* form (``form="folded"``, the default). The *bias* form
(``form="bias"``) keeps the head width and hands SDPA the bias itself as an
additive mask, ``rel_h[i, kh(j)] + rel_w[i, kw(j)]`` materialised as
[B, heads, N, N]: FlashAttention takes no arbitrary mask, so SDPA runs its
memory-efficient kernel, which reads the mask from memory. Which costs less
depends on the device; docs/runtime.md works it out for vit_h on a GPU (the
folded form: about 2.8x the tensor work of the head width, no extra memory;
the bias form: the head width's tensor work, but 2.7 GB of mask per vit_h
global block at T = 5 written and read again). The folded form is the one the
backends use; the bias form is there to be measured against it.

On the CPU, torch 2.14 runs it on its flash-attention kernel (float32 and
float64 alike; the tests check that no [heads, N, N] tensor is allocated).
Measured on 2 cores (benchmarks/train_memory.md), forward without autograd,
vit_b shapes: a 64x64 global block 1.16x and the 25 windows of a windowed
block 1.37x faster than SAM's form, so :data:`CPU_DEFAULT` is on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import Attention
from torch import nn

from .relpos_matmul import RelPosMatmulAttention

ALIGN = 8  # q/k/v widths are padded to a multiple of this

# Whether training uses the SDPA form on the CPU by default (the torch backend swaps it in on
# CUDA only): it measured faster than SAM's form on vit_b's global and windowed blocks.
CPU_DEFAULT = True

_INDEX: dict[tuple, torch.Tensor] = {}
_COORDS: dict[tuple, torch.Tensor] = {}


def _padded(width: int) -> int:
    return -(-width // ALIGN) * ALIGN


def rel_index(size: int, device: torch.device) -> torch.Tensor:
    """SAM ``get_rel_pos``'s index for equal query and key sizes: [size, size] long on
    ``device``, ``q - k + size - 1``; built once per (size, device)."""
    key = (size, torch.device(device))
    idx = _INDEX.get(key)
    if idx is None:
        with torch.inference_mode(False):  # a cache filled under inference_mode must still serve autograd
            r = torch.arange(size, device=device)
            idx = r[:, None] - r[None, :] + (size - 1)
        if type(idx) is torch.Tensor:  # not a tracer's fake tensor (ONNX export, torch.compile): it would outlive the trace
            _INDEX[key] = idx
    return idx


def rel_table(size: int, rel_pos: torch.Tensor) -> torch.Tensor:
    """SAM ``get_rel_pos(size, size, rel_pos)`` (interpolated as SAM does when the table is
    for another size) with the index from :func:`rel_index`: [size, size, d]."""
    n = 2 * size - 1
    if rel_pos.shape[0] != n:
        rel_pos = F.interpolate(rel_pos.reshape(1, rel_pos.shape[0], -1).permute(0, 2, 1), size=n, mode="linear")
        rel_pos = rel_pos.reshape(-1, n).permute(1, 0)
    return rel_pos[rel_index(size, rel_pos.device)]


def key_coords(H: int, W: int, width: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[H*W, width]: key j's one-hot row (H columns) and column (W columns), then zeros; built
    once per (H, W, width, dtype, device)."""
    key = (H, W, width, dtype, torch.device(device))
    c = _COORDS.get(key)
    if c is None:
        with torch.inference_mode(False):
            j = torch.arange(H * W, device=device)
            c = torch.zeros(H * W, width, dtype=dtype, device=device)
            c[j, j // W] = 1
            c[j, H + j % W] = 1
        if type(c) is torch.Tensor:
            _COORDS[key] = c
    return c


class SdpaAttention(Attention):
    """Same function as SAM's image-encoder ``Attention``; x [B,H,W,C] -> [B,H,W,C].

    Adopts ``attn``'s parameters (same state_dict keys), makes none. ``form``: how the
    relative-position bias reaches SDPA, ``folded`` (one-hot columns) or ``bias`` (an additive
    [B, heads, N, N] mask); see the module docstring.
    """

    FORMS = ("folded", "bias")

    def __init__(self, attn: Attention, form: str = "folded") -> None:
        nn.Module.__init__(self)  # not Attention.__init__: adopt attn's parameters
        if form not in self.FORMS:
            raise ValueError(f"form must be one of {self.FORMS}, got {form!r}")
        self.form = form
        self.num_heads, self.scale, self.use_rel_pos = attn.num_heads, attn.scale, attn.use_rel_pos
        self.qkv, self.proj = attn.qkv, attn.proj
        if attn.use_rel_pos:
            self.rel_pos_h, self.rel_pos_w = attn.rel_pos_h, attn.rel_pos_w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        heads, N = self.num_heads, H * W
        qkv = self.qkv(x).reshape(B, N, 3, heads, -1).permute(2, 0, 3, 1, 4)  # [3, B, heads, N, d]
        q, k, v = qkv.unbind(0)
        d = q.shape[-1]
        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        else:
            width = _padded(d + H + W)
            r_q = q.reshape(B, heads, H, W, d)
            rel_h = torch.einsum("bnhwc,hkc->bnhwk", r_q, rel_table(H, self.rel_pos_h)).reshape(B, heads, N, H)
            rel_w = torch.einsum("bnhwc,wkc->bnhwk", r_q, rel_table(W, self.rel_pos_w)).reshape(B, heads, N, W)
            if self.form == "bias":
                bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(B, heads, N, N)  # key j = (j // W, j % W)
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=self.scale)
                return self.proj(out.transpose(1, 2).reshape(B, H, W, heads * d))
            pad = width - d - H - W
            parts = [q * self.scale, rel_h, rel_w] + ([q.new_zeros(B, heads, N, pad)] if pad else [])
            q_ext = torch.cat(parts, dim=-1)  # [B, heads, N, width]
            coords = key_coords(H, W, width - d, q.dtype, q.device)  # [N, width - d]
            k_ext = torch.cat([k, coords.expand(B, heads, N, -1)], dim=-1)
            v_ext = F.pad(v, (0, width - d))
            out = F.scaled_dot_product_attention(q_ext, k_ext, v_ext, scale=1.0)[..., :d]
        out = out.transpose(1, 2).reshape(B, H, W, heads * d)  # [B, N, heads, d]: SAM's head-major channels
        return self.proj(out)


def use_sdpa_attention(model: nn.Module, form: str = "folded") -> int:
    """Swap every SAM image-encoder ``Attention`` in ``model`` (SAM's own or the
    ``relpos_matmul`` form) for :class:`SdpaAttention`, in place; returns how many.

    Parameters are shared and state_dict keys do not change. Modules of other
    types (the fused CUDA kernels' attention, the mask decoder's attention) stay.
    """
    n = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) in (Attention, RelPosMatmulAttention):
                setattr(parent, name, SdpaAttention(child, form))
                n += 1
    return n


def sdpa_by_default(device: torch.device | str) -> bool:
    """Whether training swaps :class:`SdpaAttention` in on ``device`` unless told otherwise."""
    return torch.device(device).type == "cuda" or CPU_DEFAULT
