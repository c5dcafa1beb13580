"""Optimisation-profile shapes and device-buffer sizes, from :mod:`avs_engine.artifacts.spec` and T.

Pure Python (no TensorRT, no CUDA): the engine builder turns
:func:`profile_shapes` into ``IOptimizationProfile.set_shape`` calls, the
tensorrt backend sizes its device and pinned buffers with
:func:`binding_sizes` / :func:`chain_buffers`, and both refuse a clip length
outside the profile (``engine_manifest.check_clip_length``) -- all of it tested without a GPU.
:func:`cpu_encoder_batch` sizes the image encoder's calls on a CPU (the ONNX Runtime
backend and the INT8 export's checks).

Every symbol of a stage's shapes is fixed by the model config except ``T``
(the clip length, dynamic in every graph). A further dynamic axis would get
its own range in ``ranges`` (symbol -> (min, opt, max)); none exists today.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..errors import BackendError, ConfigError
from .spec import STAGE_ORDER, STAGES, StageSpec, dims_for

# The ONNX exporter declares T in 1..64 (torch.export.Dim("T", max=64) in onnx_export.MAX_T).
MAX_T = 64
ITEMSIZE = {"float32": 4, "float16": 2}

Shape = tuple[int, ...]


@dataclass(frozen=True)
class TRange:
    """The clip lengths an engine accepts: ``min <= opt <= max`` frames (TensorRT tunes for ``opt``)."""

    min: int = 1
    opt: int = 5
    max: int = 8

    def validate(self) -> "TRange":
        """Raise :class:`ConfigError` unless ``1 <= min <= opt <= max <= MAX_T``."""
        vals = (self.min, self.opt, self.max)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
            raise ConfigError(f"T range must be integers, got min={self.min!r} opt={self.opt!r} max={self.max!r}")
        if not 1 <= self.min <= self.opt <= self.max <= MAX_T:
            raise ConfigError(
                f"T range must satisfy 1 <= min-t <= opt-t <= max-t <= {MAX_T}, "
                f"got min-t={self.min} opt-t={self.opt} max-t={self.max}"
            )
        return self

    def contains(self, T: int) -> bool:
        return self.min <= int(T) <= self.max

    def as_list(self) -> list[int]:
        return [self.min, self.opt, self.max]

    @classmethod
    def from_list(cls, values) -> "TRange":
        lo, opt, hi = (int(v) for v in values)
        return cls(lo, opt, hi)


def symbol_ranges(config, t: TRange, ranges: Mapping[str, tuple[int, int, int]] | None = None) -> dict[str, tuple[int, int, int]]:
    """(min, opt, max) of every shape symbol: T from ``t``, the others fixed by ``config`` unless ``ranges`` says otherwise."""
    fixed = dims_for(config, 1)
    out = {k: (v, v, v) for k, v in fixed.items()}
    out["T"] = (t.min, t.opt, t.max)
    for k, r in (ranges or {}).items():
        if k not in out:
            raise ConfigError(f"unknown shape symbol '{k}' (symbols: {', '.join(sorted(out))})")
        lo, opt, hi = (int(x) for x in r)
        if not 1 <= lo <= opt <= hi:
            raise ConfigError(f"range of '{k}' must satisfy 1 <= min <= opt <= max, got {lo}, {opt}, {hi}")
        out[k] = (lo, opt, hi)
    return out


def profile_shapes(
    stage: str | StageSpec, config, t: TRange, ranges: Mapping[str, tuple[int, int, int]] | None = None
) -> dict[str, tuple[Shape, Shape, Shape]]:
    """input name -> (min, opt, max) shapes of one stage's optimisation profile.

    ``stage``: a stage name or spec; ``t``: the T range; ``ranges``: ranges of other symbols.
    """
    spec = STAGES[stage] if isinstance(stage, str) else stage
    sym = symbol_ranges(config, t.validate(), ranges)
    out: dict[str, tuple[Shape, Shape, Shape]] = {}
    for tensor in spec.inputs:
        shapes = [tensor.concrete({k: v[i] for k, v in sym.items()}) for i in range(3)]
        out[tensor.name] = (shapes[0], shapes[1], shapes[2])
    return out


@dataclass(frozen=True)
class Binding:
    """One I/O tensor of an engine at a given T."""

    name: str
    mode: str  # "input" | "output"
    shape: Shape
    dtype: str  # "float32" | "float16"

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * ITEMSIZE[self.dtype]


def binding_sizes(stage: str | StageSpec, config, T: int, dtypes: Mapping[str, str] | None = None) -> list[Binding]:
    """Every binding of one stage's engine at clip length ``T``: inputs then outputs, with byte sizes.

    ``dtypes``: tensor name -> dtype as the engine reports it (default: the spec's, float32).
    """
    spec = STAGES[stage] if isinstance(stage, str) else stage
    dims = dims_for(config, T)
    dtypes = dtypes or {}
    out = []
    for mode, tensors in (("input", spec.inputs), ("output", spec.outputs)):
        for tensor in tensors:
            dtype = dtypes.get(tensor.name, tensor.dtype)
            if dtype not in ITEMSIZE:
                raise BackendError(f"stage '{spec.name}' tensor '{tensor.name}': dtype {dtype} is not supported (float32 or float16)")
            out.append(Binding(tensor.name, mode, tensor.concrete(dims), dtype))
    return out


def chain_buffers(config, T: int, dtypes: Mapping[str, str] | None = None) -> dict[str, Binding]:
    """The device tensors of the whole chain at clip length ``T``, one per name.

    The four stages share them: ``a128`` (audio -> image_encoder, fusion), ``enc``
    (image_encoder -> fusion, mask_decoder), ``dense``/``sparse`` (fusion ->
    mask_decoder); ``log_mel``, ``image`` come from the host and ``logits`` goes back.
    A name must have the same shape and dtype wherever it appears (asserted).
    """
    out: dict[str, Binding] = {}
    for stage in STAGE_ORDER:
        for b in binding_sizes(stage, config, T, dtypes):
            if b.name in out:
                assert (out[b.name].shape, out[b.name].dtype) == (b.shape, b.dtype), f"spec disagrees on '{b.name}'"
                continue
            out[b.name] = b
    return out


HOST_INPUTS = ("log_mel", "image")  # what run_clip copies in
HOST_OUTPUTS = ("logits",)  # what run_clip copies out


# Memory planning (benchmarks/ort_encoder_memory.md, global_attention_cpu.md), both choices exact:
# - no memory pattern: ONNX Runtime's pattern allocates one block for every intermediate of a planned
#   run, sized for the largest overlap it planned; on the encoder's unrolled attention blocks that
#   doubled the peak (one vit_h global block: 1.05 GB with it, 0.54 GB without);
# - no planned buffer reuse: the planner hands a dead tensor's buffer to a later tensor of the same
#   size, which ties the two lifetimes together; chained through the encoder's identical blocks, most
#   of a frame's intermediates stayed allocated until the run ended (one vit_b frame: 1.13 GB above the
#   loaded session with reuse, 0.47 GB without). The CPU arena stays: it reuses freed buffers itself.
CPU_SESSION_MEMORY_OPTIONS = {"enable_mem_pattern": False, "enable_mem_reuse": False, "enable_cpu_mem_arena": True}

# One ViT frame's working set (vit_h: 0.63 GB by the estimate below): vit_b/l/h encode one frame per call.
# Two vit_b frames per call needed 0.97 GB above the loaded session against 0.47 GB for one, and were
# not measurably faster (benchmarks/ort_encoder_memory_vit_b_fp32_reuse.md).
CPU_ENCODER_BUDGET_BYTES = 640 << 20


def cpu_encoder_batch(config, budget_bytes: int = CPU_ENCODER_BUDGET_BYTES) -> int:
    """Frames per image-encoder call on CPU: as many as fit ``budget_bytes`` of transient memory.

    The exported global attention runs its queries in blocks of 8 grid rows
    (``exact/blocked_attention``), so a frame's transient memory scales with one block's
    float32 scores [heads, 8*G, N], not [heads, N, N]. Measured with ONNX Runtime CPU and
    ``CPU_SESSION_MEMORY_OPTIONS``, one ViT-B frame peaks 0.47 GB above the loaded session,
    about 5 such blocks (``benchmarks/ort_encoder_memory_vit_b_fp32_reuse.md``; 1.15 GB with
    ONNX Runtime's planned buffer reuse, 3.8 GB before the blocks).
    vit_b/l/h: 1 frame per call; tiny (grid 16): every frame in one call (2 threads: 19.6 ->
    13.7 ms for 5 frames, measured 2026-11-26)."""
    n = config.grid * config.grid
    block_queries = min(n, 8 * config.grid)
    per_frame = 5 * config.encoder.num_heads * block_queries * n * 4
    return max(1, budget_bytes // per_frame)
