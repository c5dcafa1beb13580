"""SAM's mask decoder run on T frames at once, frame i paired with its own prompts.

``MaskDecoder.predict_masks`` repeats each image once per prompt set
(``repeat_interleave``), so T images with T prompt sets in one call would pair
every image with every prompt. :func:`decode_frames` runs the
same steps with a one-to-one pairing. The weights stay SAM's ``MaskDecoder``
(keys ``mask_decoder.*``).
"""

from __future__ import annotations

import torch
from segment_anything.modeling import MaskDecoder, TwoWayTransformer

from ..config import DecoderConfig


def build_mask_decoder(cfg: DecoderConfig, dim: int) -> MaskDecoder:
    return MaskDecoder(
        num_multimask_outputs=cfg.num_multimask_outputs,
        transformer=TwoWayTransformer(
            depth=cfg.transformer_depth, embedding_dim=dim, mlp_dim=cfg.mlp_dim, num_heads=cfg.num_heads
        ),
        transformer_dim=dim,
        iou_head_depth=cfg.iou_head_depth,
        iou_head_hidden_dim=cfg.iou_head_hidden_dim,
    )


def decode_frames(
    decoder: MaskDecoder,
    enc: torch.Tensor,
    dense: torch.Tensor,
    sparse: torch.Tensor,
    image_pe: torch.Tensor,
) -> torch.Tensor:
    """Low-resolution mask logits, the 3 multimask outputs summed.

    enc [T,C,G,G], dense [T,C,G,G], sparse [T,2,C], image_pe [1,C,G,G]
    -> logits [T,1,4G,4G].
    """
    T = enc.shape[0]
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)  # [1+M, C]
    tokens = torch.cat([output_tokens.unsqueeze(0).expand(T, -1, -1), sparse], dim=1)  # [T, 1+M+2, C]
    src = enc + dense  # frame i with its own dense prompt: no repeat_interleave
    pos_src = image_pe  # [1,C,G,G]: the transformer's adds broadcast it over frames (same values as SAM's repeat)
    b, c, h, w = src.shape

    hs, src = decoder.transformer(src, pos_src, tokens)
    mask_tokens_out = hs[:, 1 : 1 + decoder.num_mask_tokens, :]  # [T, M, C]

    src = src.transpose(1, 2).reshape(b, c, h, w)
    upscaled = decoder.output_upscaling(src)  # [T, C/8, 4G, 4G]
    hyper_in = torch.stack(
        [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1
    )  # [T, M, C/8]
    b, c8, hh, ww = upscaled.shape
    masks = (hyper_in @ upscaled.view(b, c8, hh * ww)).view(b, -1, hh, ww)  # [T, M, 4G, 4G]
    # multimask_output=True keeps outputs 1..M-1 (the 3 multimask logits); ST-BAVA sums them.
    return masks[:, 1:].sum(dim=1, keepdim=True)
