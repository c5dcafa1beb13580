"""Training memory: activation checkpointing of the encoder blocks, and the estimate of
one step's peak that avs-train checks before step 1.

Why the encoder dominates: the audio adapters are trained and add a prompt in
front of every encoder block, so the backward pass runs through all blocks of
all frames of a micro-batch at once, and autograd keeps each block's
activations until then. Counts below are per frame, in elements; N = G*G
tokens, D the encoder width, h heads of width d = D/h, n_w windows of n = w*w
tokens (N_p = n_w * n, SAM pads the grid to whole windows; a global block has
n_w = 1, n = N_p = N), s the attention grid side (w or G).

Kept for backward by one block with frozen weights (the paper's recipe):
the two LayerNorm inputs (2 ND) and the GELU input (4 ND), plus

- SAM's attention: qkv output (3 N_p D; k and v are views of it), the scaled
  q (N_p D) and the softmax output h n_w n^2, the score matrices;
- ``exact.sdpa_attention``: q, k, v and output at the padded width
  W = roundup8(d + 2s), 4 h N_p W, and one log-sum-exp per query row.

A trainable encoder adds the linear layers' inputs (qkv and proj N_p D each,
MLP 5 ND) and the copies of q the relative-position einsums keep (SDPA form
2 N_p D, SAM's 1 N_p D). With checkpointing a block keeps only its input
(ND) and recomputes the rest during the backward pass, one block at a time
for the whole micro-batch. The working memory on top of what is kept: SAM's
attention holds up to two more score matrices at once (forward adds,
softmax backward); the SDPA form the q/k/v gradients (3 h N_p W) and a few
ND. The fusion, mask decoder and neck are counted in units of N*C (C the
fusion width) from their tensor shapes: about (30 + T) N C per fusion layer
and 40 N C for the decoder, neck and prompts. Checked against saved-tensor
traces and peak RSS in benchmarks/train_memory.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from segment_anything.modeling.image_encoder import Block
from torch.utils.checkpoint import checkpoint

from ..config import ModelConfig, resolve
from ..errors import ConfigError

GIB = 1024**3
CHECKPOINT_MIN_WIDTH = 768  # encoders at least as wide as vit_b's checkpoint their blocks by default
FRAGMENTATION = 1.10  # allocator slack on activations (caching allocator / malloc arenas)
OVERHEAD = {"cuda": int(1.0 * GIB), "cpu": int(0.8 * GIB)}  # CUDA context and workspaces / the interpreter and libraries


class CheckpointedBlock(Block):
    """SAM's encoder block whose activations are recomputed in the backward pass
    (``torch.utils.checkpoint``, non-reentrant): it keeps only its input. Same
    parameters and state_dict keys; without autograd it is SAM's block."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return checkpoint(Block.forward, self, x, use_reentrant=False)
        return Block.forward(self, x)


def checkpoint_encoder_blocks(model: torch.nn.Module, enabled: bool = True) -> int:
    """Make every SAM encoder block of ``model`` checkpointed (or plain again), in place;
    returns how many blocks are checkpointed afterwards."""
    n = 0
    for m in model.modules():
        if isinstance(m, Block):
            m.__class__ = CheckpointedBlock if enabled else Block
            n += enabled
    return n


def checkpoint_by_default(config: ModelConfig) -> bool:
    return config.encoder.embed_dim >= CHECKPOINT_MIN_WIDTH


# -- the estimate ------------------------------------------------------------------------------


def _width(d: int, side: int) -> int:
    from ..exact.sdpa_attention import ALIGN

    return -(-(d + 2 * side) // ALIGN) * ALIGN


def block_elements(config: ModelConfig, window: int, *, sdpa: bool, trainable: bool) -> tuple[int, int]:
    """One encoder block, one frame: (elements kept for backward, working elements on top
    while it computes or is recomputed)."""
    e = config.encoder
    G, D, h = e.grid, e.embed_dim, e.num_heads
    d, N = D // h, G * G
    side = window if window else G
    n_w = math.ceil(G / side) ** 2
    n = side * side
    Np = n_w * n
    kept = 6 * N * D
    if sdpa:
        W = _width(d, side)
        kept += 4 * h * Np * W + h * Np
        work = 3 * h * Np * W + 8 * N * D
        kept += (2 * Np * D) if trainable else 0
    else:
        scores = h * n_w * n * n
        kept += 4 * Np * D + scores
        work = 2 * scores + 8 * N * D
        kept += (Np * D) if trainable else 0
    if trainable:
        kept += 2 * Np * D + 5 * N * D
    return kept, work


def audio_elements(config: ModelConfig) -> int:
    """A trainable audio backbone's activations for one 96x64 log-mel: about twice its conv
    maps (the conv input and the ReLU output / pooling indices)."""
    a = config.audio
    if a.kind == "vggish":
        stages = ((64, True), (128, True), (256, False), (256, True), (512, False), (512, True))
    else:
        stages = tuple((c, True) for c in a.channels)
    px, total = 96 * 64, 0
    for c, pool in stages:
        total += c * px
        px //= 4 if pool else 1
    return 2 * total


_GROUP_PREFIXES = {
    "adapters": ("image_encoder.prompt_generator.",),
    "image_encoder": ("image_encoder.",),
    "audio": ("audio_backbone.",),
    "fusion": ("layers.", "audio_embed_layer."),
    "mask_decoder": ("mask_decoder.",),
}


def set_trainable(model: torch.nn.Module, freeze: tuple[str, ...]) -> dict[str, int]:
    """Freeze the named groups (the encoder's adapters stay trainable unless "adapters" is named).
    Returns trainable parameter counts per group."""
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        group = next(g for g, pre in _GROUP_PREFIXES.items() if name.startswith(pre))
        p.requires_grad_(group not in freeze)
        if p.requires_grad:
            counts[group] = counts.get(group, 0) + p.numel()
    return counts


def parameter_counts(config: ModelConfig, freeze: tuple[str, ...]) -> tuple[int, int]:
    """(all parameters, trainable ones) of the model, counted on the meta device."""
    from ..reference.build import build_model

    model = build_model(config, device="meta")
    trainable = sum(set_trainable(model, freeze).values())
    return sum(p.numel() for p in model.parameters()), trainable


@dataclass(frozen=True)
class StepMemory:
    """One training step's peak, estimated. Bytes."""

    model: str
    device_type: str
    frames: int  # frames per micro-batch (clips x T)
    T: int
    sdpa: bool
    checkpoint: bool
    weights: int  # parameters, gradients of the trainable ones, Adam's two moments
    kept_per_frame: int  # activations kept for the backward pass
    work_per_frame: int  # working memory on top, at the step's worst moment
    overhead: int

    @property
    def per_frame(self) -> int:
        return int((self.kept_per_frame + self.work_per_frame) * FRAGMENTATION)

    @property
    def total(self) -> int:
        return self.weights + self.overhead + self.frames * self.per_frame

    def describe(self) -> str:
        how = ", ".join([("SDPA attention" if self.sdpa else "SAM's attention"),
                         ("checkpointed blocks" if self.checkpoint else "no checkpointing")])
        return (f"{self.frames} frame(s) per micro-batch ({self.model}, {how}: {gb(self.per_frame)} per frame, "
                f"{gb(self.weights)} weights/gradients/Adam, {gb(self.overhead)} runtime)")


def gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def estimate_step_memory(config, *, clips: int, T: int = 5, freeze: tuple[str, ...] = ("image_encoder", "audio"),
                         sdpa: bool = True, checkpoint: bool = True, device_type: str = "cuda",
                         valid_frames: int | None = None, counts: tuple[int, int] | None = None) -> StepMemory:
    """The peak of one float32 training step with ``clips`` clips of ``T`` frames per micro-batch.

    ``valid_frames``: frames with a mask per micro-batch (the loss upsamples those to the input
    side); default all. ``counts``: (all, trainable) parameter counts when already known.
    """
    cfg = resolve(config)
    e, f = cfg.encoder, cfg.fusion
    enc_trainable = "image_encoder" not in freeze
    frames = clips * T
    kept, work = 0, 0
    for i in range(e.depth):
        window = 0 if i in e.global_attn_indexes else e.window_size
        k, w = block_elements(cfg, window, sdpa=sdpa, trainable=enc_trainable)
        if checkpoint:
            # the block input stays; the recomputed block (kept + working) is one block at a time
            kept += e.grid**2 * e.embed_dim
            work = max(work, k + w)
        else:
            kept += k
            work = max(work, w)
    NC = e.grid**2 * f.dim
    kept += (f.depth * (30 + T) + 40) * NC
    if enc_trainable:
        kept += 3 * e.img_size**2  # the image, kept by the patch embedding
    if "audio" not in freeze:
        kept += audio_elements(cfg)
    valid = frames if valid_frames is None else valid_frames
    loss = (2 * cfg.output_size**2 + e.img_size**2) * valid // max(frames, 1)  # upsampled logits and targets
    n_all, n_train = counts if counts is not None else parameter_counts(cfg, freeze)
    el = 4  # float32
    return StepMemory(
        model=cfg.name, device_type=device_type, frames=frames, T=T, sdpa=sdpa, checkpoint=checkpoint,
        weights=el * (n_all + 3 * n_train), kept_per_frame=el * (kept + loss), work_per_frame=el * work,
        overhead=OVERHEAD.get(device_type, OVERHEAD["cpu"]),
    )


# -- the device and the refusal --------------------------------------------------------------------


def mem_available() -> int | None:
    """MemAvailable of /proc/meminfo in bytes (None where there is no such file)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def device_memory(device: torch.device) -> tuple[int | None, str]:
    """(bytes the step can still use on ``device``, where the number comes from)."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return free, f"{gb(free)} free of {gb(total)} on {device} (torch.cuda.mem_get_info)"
    avail = mem_available()
    return avail, (f"{gb(avail)} available RAM (MemAvailable, /proc/meminfo)" if avail is not None else "unknown")


def refusal(estimate, *, clips: int, T: int, sdpa: bool, checkpoint: bool, available: int | None, source: str,
            resident: int = 0, batch_clips: int | None = None) -> str | None:
    """None when a step fits, else one line with the numbers and what to change.

    ``estimate(clips, sdpa, checkpoint)`` -> :class:`StepMemory`; ``resident``: bytes of it already
    allocated there (on a CPU run the model is built in RAM before the check).
    """
    est = estimate(clips, sdpa, checkpoint)
    if available is None or est.total - resident <= available:
        return None

    def need(a: StepMemory) -> int:
        return a.total - resident

    options = []
    if not sdpa:
        options.append(("--sdpa-attention", estimate(clips, True, checkpoint)))
    if not checkpoint:
        options.append(("--checkpoint-blocks", estimate(clips, sdpa, True)))
    if not sdpa and not checkpoint:
        options.append(("--sdpa-attention --checkpoint-blocks", estimate(clips, True, True)))
    fits = [f"{flag} ({gb(need(a))})" for flag, a in options if need(a) <= available]
    if not fits:
        extra = "" if sdpa and checkpoint else " --sdpa-attention --checkpoint-blocks"
        for c in range(clips - 1, 0, -1):
            a = estimate(c, True, True)
            if need(a) <= available:
                fits.append(f"--micro-batch-clips {c}{extra} ({gb(need(a))}; the batch stays {batch_clips or clips} clips)")
                break
    one = estimate(1, True, True)
    change = ("it fits with " + " or ".join(fits)) if fits else (
        f"even 1 clip per micro-batch with SDPA attention and checkpointing needs {gb(need(one))}: "
        "use a device with more memory or shorter clips")
    more = f" on top of the {gb(resident)} already in use" if resident else ""
    return (f"a training step of {est.describe()} needs about {gb(need(est))}{more}, but there is {source}: {change}; "
            "--skip-memory-check tries anyway")
