"""Export-only wrappers: one ``nn.Module`` per graph (docs/graphs.md), and the passes
that prepare a copy of the model for export by swapping modules (no ``if exporting:``
branches in the model).

The reference model stays plain: nothing here changes it. :func:`export_copy`
returns a copy that shares every parameter with the model but has

* SAM's ``LayerNorm2d`` (image encoder neck, mask decoder upscaling) swapped
  for :class:`ChannelLayerNorm` -- the same maths written as
  permute + ``F.layer_norm`` + permute, so it exports as one
  ``LayerNormalization`` node instead of ReduceMean/Pow/Sqrt (whose ``x**2``
  overflows in float16 once ``|x| > 256``);
* every ST-BAVA block swapped for :class:`~avs_engine.exact.fused_fusion.FusedAVFusionBlock`
  and every attention of SAM's two-way transformer for
  :class:`~avs_engine.exact.folded_decoder.FoldedAttention`: the same functions
  with the redundant work removed (docs/graphs.md), tested equal to the reference to
  float32 rounding. Measured on ONNX Runtime CPU (vit_b, T=5, 2 threads):
  fusion graph 1.69 s -> 0.95-0.99 s, mask decoder 0.20 s -> 0.16 s, FP32 error
  against a float64 reference unchanged (``benchmarks/onnx_cpu.md``);
* the image encoder's attention swapped for
  :class:`~avs_engine.exact.blocked_attention.BlockedAttention`: in windows (and
  small global grids) the relative-position bias goes inside the score matmul
  instead of two broadcast adds; on the 64x64 global grids the queries run in
  blocks of grid rows, so no [heads, N, N] score matrix exists in the graph
  (vit_h, one frame: 1.07 GB per score tensor otherwise);
* every windowed encoder block swapped for
  :class:`~avs_engine.exact.windowed_block.WindowedBlock`: ``qkv`` on the real
  tokens only (a padded token's qkv is the bias) and ``proj`` after the crop,
  which skips 16% of those two products on a 64x64 grid of 14x14 windows.

The random-Fourier positional encoding (``STBAVA.dense_pe``) depends on no
input: the exporter's constant folding turns it into one constant of the
fusion and mask decoder graphs (a test checks no Sin/Cos is left).

Each wrapper's ``forward`` calls the reference model's stage method, so the
exported graph computes the reference's function by construction; only the
swapped modules order the operations differently.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.image_encoder import Attention as EncoderAttention
from segment_anything.modeling.transformer import Attention
from torch import nn

from ..exact.folded_decoder import FoldedAttention
from ..exact.fused_fusion import FusedAVFusionBlock
from ..exact.blocked_attention import BlockedAttention
from ..exact.windowed_block import WindowedBlock, is_windowed
from ..reference.fusion import AVFusionBlock
from ..reference.model import STBAVA


class ChannelLayerNorm(nn.Module):
    """``LayerNorm2d`` over the channels of ``[N,C,H,W]``, as permute + layer_norm + permute.

    Shares ``weight``/``bias`` with the module it replaces.
    """

    def __init__(self, src: LayerNorm2d) -> None:
        super().__init__()
        self.weight = src.weight
        self.bias = src.bias
        self.eps = src.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N,C,H,W] -> [N,C,H,W], normalised over C."""
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)  # [N,H,W,C]
        return y.permute(0, 3, 1, 2)


def swap_modules(root: nn.Module, replace: Callable[[str, nn.Module], nn.Module | None]) -> nn.Module:
    """A copy of ``root`` in which every submodule for which ``replace(name, module)``
    returns a module is swapped for it.

    Copy-on-write: only the modules on the path to a swapped one are (shallow)
    copied; everything else, parameters included, is shared with ``root``,
    which is left unchanged.
    """

    def visit(name: str, module: nn.Module) -> nn.Module:
        new = replace(name, module)
        if new is not None:
            return new
        children = {}
        for child_name, child in module.named_children():
            swapped = visit(f"{name}.{child_name}" if name else child_name, child)
            if swapped is not child:
                children[child_name] = swapped
        if not children:
            return module
        out = copy.copy(module)
        out._modules = dict(module._modules)  # shallow copy shares the dict: give the copy its own
        out._modules.update(children)
        return out

    return visit("", root)


def export_copy(model: STBAVA) -> STBAVA:
    """The model as the graphs see it: LayerNorm2d as :class:`ChannelLayerNorm`, the
    ST-BAVA blocks fused, the decoder's attention folded, the encoder's rel-pos bias
    in its score matmul (windows) or its queries in blocks (global grids), the windowed blocks' qkv on
    the real tokens only (module docstring).

    The copy shares parameters with ``model`` (no memory for vit_h's 2.5 GB);
    ``model`` is unchanged.
    """

    def replace(name: str, module: nn.Module) -> nn.Module | None:
        if isinstance(module, LayerNorm2d):
            return ChannelLayerNorm(module)
        if type(module) is AVFusionBlock:
            return FusedAVFusionBlock.from_block(module)
        if type(module) is Attention:
            return FoldedAttention(module)
        if is_windowed(module):
            return WindowedBlock(module)
        if type(module) is EncoderAttention and module.use_rel_pos:
            return BlockedAttention(module)
        return None

    return swap_modules(model, replace).eval()


# -- one wrapper per graph; inputs and outputs in the order of avs_engine.artifacts.spec ------------------


class _Graph(nn.Module):
    def __init__(self, model: STBAVA) -> None:
        super().__init__()
        self.model = model


class AudioGraph(_Graph):
    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """log_mel [T,1,96,64] -> a128 [T,A]."""
        return self.model.embed_audio(log_mel)


class ImageEncoderGraph(_Graph):
    def forward(self, image: torch.Tensor, a128: torch.Tensor) -> torch.Tensor:
        """image [T,3,S,S], a128 [T,A] -> enc [T,C,G,G]."""
        return self.model.encode(image, a128)


class FusionGraph(_Graph):
    def forward(self, enc: torch.Tensor, a128: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """enc [T,C,G,G], a128 [T,A] -> dense [T,C,G,G], sparse [T,2,C]."""
        return self.model.fuse(enc, a128)


class MaskDecoderGraph(_Graph):
    def forward(self, enc: torch.Tensor, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """enc [T,C,G,G], dense [T,C,G,G], sparse [T,2,C] -> logits [T,1,4G,4G] (sum of 3)."""
        return self.model.decode(enc, dense, sparse)


GRAPHS: dict[str, type[_Graph]] = {
    "audio": AudioGraph,
    "image_encoder": ImageEncoderGraph,
    "fusion": FusionGraph,
    "mask_decoder": MaskDecoderGraph,
}


def graph_modules(model: STBAVA) -> dict[str, nn.Module]:
    """stage name -> export wrapper around one shared export copy of ``model``."""
    prepared = export_copy(model)
    return {name: cls(prepared).eval() for name, cls in GRAPHS.items()}
