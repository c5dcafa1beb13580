"""``torch.compile`` of the image encoder's blocks: a pass, like the others, on a built model.

The encoder is 95-99% of a clip's work and is a stack of identical blocks, so
the blocks are what is compiled (each in place with ``nn.Module.compile``; the
windowed and the global blocks give two graphs, reused by every block of their
kind). Blocks whose attention launches the fused CUDA kernels on raw pointers
stay eager: the compiler cannot see into those launches. Compilation happens
at the first call (tens of seconds to minutes), not here.
"""

from __future__ import annotations

import os
import shutil
import sys

from torch import nn


def compile_unavailable(torch, device) -> str | None:
    """Why ``torch.compile`` cannot run the encoder on ``device`` here, or None."""
    if not torch._dynamo.is_dynamo_supported():
        return f"torch {torch.__version__} cannot compile on Python {sys.version.split()[0]}"
    if device.type == "cpu":
        compilers = [os.environ.get("CXX"), "g++", "clang++", "c++"]
        if not any(c and shutil.which(c) for c in compilers):
            return "torch.compile on the CPU needs a C++ compiler (g++ or clang++; or set CXX)"
        return None
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "torch.compile on CUDA needs Triton (pip install triton)"
    return f"torch.compile is not set up for {device.type} devices here"


def compile_encoder_blocks(encoder: nn.Module) -> int:
    """Compile every block of ``encoder`` in place, except those holding fused-kernel attention;
    returns how many were compiled. Parameters and state_dict keys do not change."""
    n = 0
    for blk in encoder.blocks:
        if getattr(blk.attn, "launches_raw_kernels", False):
            continue
        blk.compile()
        n += 1
    return n
