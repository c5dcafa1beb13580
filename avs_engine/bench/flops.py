"""FLOPs of each stage, counted from the architecture (a ModelConfig and T).

What is counted: the multiply-adds of every matrix product and convolution
the PyTorch reference executes, two FLOPs each (the convention of
``torch.utils.flop_counter`` and of published SAM figures). Element-wise
work (norms, softmax, GELU, additions, pooling) is not counted. The
reference's own shapes are used: SAM's windowed blocks run their projections
on the padded grid (64 -> 70 for 14x14 windows); ST-BAVA's attentions
project the audio tokens after they are expanded to every pixel, as the
authors' code does, so the fusion figure is the reference's work, not the
floor of the fused path (its exact algebra removes most of it: docs/graphs.md).

No torch here: ``avs-bench`` reports these figures for any backend.
"""

from __future__ import annotations

import math

from ..config import AudioConfig, DecoderConfig, EncoderConfig, FusionConfig, ModelConfig

# VGGish: (out channels, max-pool after) per 3x3 conv, then 512*6*4 -> 4096 -> 4096 -> embed.
_VGGISH_CONVS = ((64, True), (128, True), (256, False), (256, True), (512, False), (512, True))
LOG_MEL_SHAPE = (96, 64)  # one VGGish example: frames x mel bands


def _conv_macs(h: int, w: int, c_in: int, c_out: int, k: int) -> int:
    """A stride-1, 'same'-padded k x k convolution over an h x w map."""
    return h * w * c_in * c_out * k * k


def encoder_macs_per_frame(e: EncoderConfig, audio_dim: int = 128) -> dict[str, int]:
    """Multiply-adds of one frame through the audio-adapted SAM ViT, by part."""
    G, D = e.grid, e.embed_dim
    hidden = int(D * e.mlp_ratio)
    parts = {"patch_embed": G * G * D * 3 * e.patch_size**2, "adapters": 0, "qkv_proj": 0,
             "attention": 0, "rel_pos": 0, "mlp": 0, "neck": 0}
    for i in range(e.depth):
        parts["adapters"] += audio_dim * e.adapter_dim + e.adapter_dim * D
        if i in e.global_attn_indexes or e.window_size == 0:
            side, n_win, L = G, 1, G * G  # one window: the whole grid
        else:
            ws = e.window_size
            side = ws
            padded = math.ceil(G / ws) * ws  # window_partition pads the grid to a multiple of ws
            n_win, L = (padded // ws) ** 2, ws * ws
        tokens = n_win * L  # padded token count: projections run on the padding too
        parts["qkv_proj"] += tokens * D * 3 * D + tokens * D * D
        parts["attention"] += 2 * n_win * L * L * D  # q k^T and attn v, all heads
        parts["rel_pos"] += tokens * (side + side) * D  # decomposed: one einsum per axis
        parts["mlp"] += G * G * 2 * D * hidden  # after un-partitioning: unpadded grid
    parts["neck"] = _conv_macs(G, G, D, e.out_chans, 1) + _conv_macs(G, G, e.out_chans, e.out_chans, 3)
    return parts


def audio_macs_per_example(a: AudioConfig) -> int:
    """One [1,96,64] log-mel example through the audio backbone."""
    h, w = LOG_MEL_SHAPE
    c_in, macs = 1, 0
    if a.kind == "vggish":
        for c_out, pool in _VGGISH_CONVS:
            macs += _conv_macs(h, w, c_in, c_out, 3)
            c_in = c_out
            if pool:
                h, w = h // 2, w // 2
        widths = (c_in * h * w, 4096, 4096, a.embed_dim)
        return macs + sum(x * y for x, y in zip(widths, widths[1:]))
    for c_out in a.channels:  # SmallAudioNet: conv, ReLU, 2x2 max-pool per stage
        macs += _conv_macs(h, w, c_in, c_out, 3)
        c_in, h, w = c_out, h // 2, w // 2
    return macs + c_in * a.embed_dim


def fusion_macs_per_clip(f: FusionConfig, grid: int, T: int, audio_dim: int = 128) -> dict[str, int]:
    """ST-BAVA over one clip of T frames (all frames together), by part."""
    N, C, M = grid * grid, f.dim, f.mlp_dim
    TN = T * N
    per_block = {
        # embed_vis and embed_av on every pixel token, embed_audio and embed_audio2 on the T audio tokens.
        "mlp": 2 * TN * 2 * C * M + 2 * T * 2 * C * M,
        # Projections (in: q, k, v; then out), in the order of AVFusionBlock.forward:
        "projections": (
            4 * TN * C * C  # avt, audio update: q = pixels, k/v = audio expanded to [T,N,C]
            + 2 * TN * C * C + 2 * T * C * C  # avs, audio update: q/out over pixels, k/v one token per frame
            + 4 * TN * C * C  # avt, visual update: q = audio expanded, k/v = pixels
            + 2 * TN * C * C + 2 * T * C * C  # avs, visual update: k/v over pixels, q/out one token per frame
        ),
        # Score and value products: T x T per pixel twice, N x 1 per frame twice.
        "attention": 2 * (2 * N * T * T * C) + 2 * (2 * T * N * C),
    }
    parts = {k: v * f.depth for k, v in per_block.items()}
    parts["audio_embed"] = T * audio_dim * C
    parts["positional_encoding"] = _pe_macs(grid, C)
    return parts


def _pe_macs(grid: int, dim: int) -> int:
    """SAM's random-Fourier positional encoding of the grid: [G*G, 2] @ [2, dim/2]."""
    return grid * grid * 2 * (dim // 2)


def decoder_macs_per_frame(d: DecoderConfig, dim: int, grid: int) -> dict[str, int]:
    """SAM's mask decoder for one frame with 2 sparse tokens (no IoU head: ST-BAVA does not use it).

    The grid's positional encoding, computed once per clip, is not included
    (:func:`stage_flops` adds it)."""
    N, C = grid * grid, dim
    n_masks = d.num_multimask_outputs + 1
    nt = 1 + n_masks + 2  # IoU token, mask tokens, the 2 sparse audio tokens
    ci = C // 2  # cross attentions downsample their inner width by 2 (SAM's attention_downsample_rate)
    self_attn = 4 * nt * C * C + 2 * nt * nt * C
    t2i = nt * C * ci + 2 * N * C * ci + nt * ci * C + 2 * nt * N * ci  # tokens attend to the image
    i2t = N * C * ci + 2 * nt * C * ci + N * ci * C + 2 * N * nt * ci  # the image attends to the tokens
    mlp = nt * 2 * C * d.mlp_dim
    up1 = (2 * grid) ** 2 * C * (C // 4)  # ConvTranspose2d(C, C/4, 2, stride 2)
    up2 = (4 * grid) ** 2 * (C // 4) * (C // 8)  # ConvTranspose2d(C/4, C/8, 2, stride 2)
    return {
        "two_way_transformer": d.transformer_depth * (self_attn + t2i + i2t + mlp) + t2i,
        "upscaling": up1 + up2,
        "hypernetworks": n_masks * (2 * C * C + C * (C // 8)),
        "mask_product": n_masks * (C // 8) * (4 * grid) ** 2,
    }


def stage_flops(config: ModelConfig, T: int) -> dict[str, float]:
    """FLOPs (2 per multiply-add) of each model stage for one clip of T frames."""
    enc = sum(encoder_macs_per_frame(config.encoder, config.audio.embed_dim).values())
    fus = sum(fusion_macs_per_clip(config.fusion, config.grid, T, config.audio.embed_dim).values())
    dec = sum(decoder_macs_per_frame(config.decoder, config.fusion.dim, config.grid).values())
    return {
        "audio": 2.0 * T * audio_macs_per_example(config.audio),
        "image_encoder": 2.0 * T * enc,
        "fusion": 2.0 * fus,
        "mask_decoder": 2.0 * (T * dec + _pe_macs(config.grid, config.fusion.dim)),
    }


__all__ = [
    "stage_flops", "encoder_macs_per_frame", "audio_macs_per_example",
    "fusion_macs_per_clip", "decoder_macs_per_frame",
]
