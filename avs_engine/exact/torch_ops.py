"""torch glue for the CUDA kernels, and the pass that puts them into a built model.

Tensors become :class:`~.launchers.DeviceArray` views (``data_ptr``, shape,
strides); kernels run on torch's current stream of the tensor's device.
:func:`use_cuda_kernels` swaps modules, in place (the model code stays plain):

- every ST-BAVA block for a :class:`CudaFusedAVFusionBlock` (the exact-algebra
  block of ``fused_fusion`` with its three attention reductions on the kernels);
- every global-attention module of the SAM encoder (``window_size == 0``, head
  dim 64 or 80, grid <= 64) for a :class:`CudaRelPosAttention` (flash attention
  with the decomposed relative-position bias added on the fly).

Parameters are shared with the original modules; state_dict keys do not change.

Nothing here fails in a forward pass because of the GPU or the shape: a GPU
below compute capability 8.0 gets no kernels at all, and a shape the kernels
cannot take (T > 8, too much shared memory, ...) or a kernel that cannot be
built runs the same maths in PyTorch, each with one warning line (``warn``).
The ``kernels`` factories and the device's capability are injectable: tests
pass the host emulators of ``host_emulation`` and run all of this on the CPU.

The kernels are built when first needed: the flash kernel by :func:`use_cuda_kernels`,
the ST-BAVA kernels at the first forward with a new clip length. Capturing a
forward in a CUDA graph therefore needs a warm-up forward at that clip length
first (as torch's CUDA-graph capture asks anyway).
"""

from __future__ import annotations

import sys
from typing import Callable

import torch
from torch import nn

from .fused_fusion import FusedAVFusionBlock, TorchAttentionOps
from .sdpa_attention import rel_table
from ..errors import AvsError, ShapeError
from ..kernels.launchers import DeviceArray, RelPosAttention, StbavaKernels
from ..kernels.nvrtc import MIN_COMPUTE_CAPABILITY, unsupported_reason

DTYPE_NAMES = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
# What building a kernel can raise: our one-line errors (no compiler, unsupported GPU, ...), a missing
# cuda-python, and cuda-pathfinder's missing-library error (a RuntimeError).
BUILD_ERRORS = (AvsError, ImportError, OSError, RuntimeError)

Warn = Callable[[str], None]
_WARNED: set[str] = set()


def warn_once(msg: str) -> None:
    """Default sink of fallback warnings: one line on stderr, once per message and process."""
    if msg not in _WARNED:
        _WARNED.add(msg)
        print(f"warning: {msg}", file=sys.stderr, flush=True)


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _ordinal(device: torch.device) -> int:
    """The CUDA device index of ``device`` (``cuda`` alone: torch's current device)."""
    if device.index is not None:
        return device.index
    return torch.cuda.current_device() if device.type == "cuda" else 0


def kernels_unavailable(device, capability: tuple[int, int] | None = None, name: str | None = None) -> str | None:
    """Why the fused CUDA kernels cannot run on ``device``, or None; asked before anything is built.

    ``capability``/``name``: the GPU's compute capability and name instead of asking torch (tests)."""
    device = torch.device(device)
    if capability is None:
        if device.type != "cuda":
            return f"{device} is not a CUDA device"
        capability = torch.cuda.get_device_capability(device)
    if tuple(capability) < MIN_COMPUTE_CAPABILITY:
        if name is None and device.type == "cuda":
            name = torch.cuda.get_device_name(device)
        return unsupported_reason(f"sm_{capability[0]}{capability[1]}", f"{name or 'this GPU'} ({device})")
    try:
        from cuda.bindings import driver  # noqa: F401
    except ImportError:
        return "cuda-python is not installed (pip install 'cuda-python[all]>=12.8')"
    return None


def as_array(t: torch.Tensor, name: str = "tensor") -> DeviceArray:
    return DeviceArray(t.data_ptr(), tuple(t.shape), tuple(t.stride()), DTYPE_NAMES.get(t.dtype, str(t.dtype)), name)


def stream_of(t: torch.Tensor) -> int:
    """torch's current stream on the tensor's device (0 for host tensors: emulation)."""
    return torch.cuda.current_stream(t.device).cuda_stream if t.is_cuda else 0


def _inner_contiguous(t: torch.Tensor) -> torch.Tensor:
    return t if t.stride(-1) == 1 else t.contiguous()


class _DeviceGuard:
    """``torch.cuda.device(t.device)`` for CUDA tensors (the kernels load into that context)."""

    def __init__(self, t: torch.Tensor) -> None:
        self.ctx = torch.cuda.device(t.device) if t.is_cuda else None

    def __enter__(self):
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *exc):
        if self.ctx is not None:
            self.ctx.__exit__(*exc)


class CudaAttentionOps:
    """``TorchAttentionOps``' three methods on the CUDA kernels (same arguments, same results)."""

    def __init__(self, kernels: Callable[..., StbavaKernels] | None = None, warn: Warn | None = None) -> None:
        self.factory = kernels
        self.warn = warn or warn_once
        self._cache: dict[tuple, StbavaKernels | None] = {}
        # Set by the first build that failed (no cuda-python, NVRTC or the driver refusing): the
        # toolchain, not the shape, so other shapes (a video's shorter last clip) do not try again.
        self._build_failed = False

    def kernels(self, T: int, H: int, C: int, like: torch.Tensor) -> StbavaKernels | None:
        """The kernels for (T, H, C) on ``like``'s device, or None (with one warning) if they cannot
        take the shape or cannot be built here: the caller then runs the PyTorch form. A build that
        failed is not tried again, for this shape or any other."""
        key = (T, H, C, like.device)
        if key not in self._cache:
            self._cache[key] = None if self._build_failed else self._build(T, H, C, like)
        return self._cache[key]

    def _build(self, T: int, H: int, C: int, like: torch.Tensor) -> StbavaKernels | None:
        try:
            StbavaKernels.check_shape(T, H, C)
        except ShapeError as e:
            self.warn(f"{e}; the ST-BAVA attention runs in PyTorch for this shape")
            return None
        try:
            with _DeviceGuard(like):
                factory = self.factory or (lambda T, H, C: StbavaKernels(T, H, C, device=_ordinal(like.device)))
                return factory(T, H, C)
        except BUILD_ERRORS as e:
            self._build_failed = True
            self.warn(f"the fused ST-BAVA kernels cannot be built for T={T} H={H} C={C} ({_first_line(e)}); "
                      "the ST-BAVA attention runs in PyTorch instead")
            return None

    def temporal_audio(self, v, vpe, m, beta, values, num_heads: int) -> torch.Tensor:
        T, N, C = v.shape
        k = self.kernels(T, num_heads, C, v)
        if k is None:
            return TorchAttentionOps.temporal_audio(v, vpe, m, beta, values, num_heads)
        v, vpe = _inner_contiguous(v), _inner_contiguous(vpe.to(v.dtype))
        f32 = dict(dtype=torch.float32, device=v.device)
        m, beta, values = (x.to(torch.float32).contiguous() for x in (m, beta, values))
        pbar = torch.empty(T, num_heads * T, **f32)
        out = torch.empty(T, C, **f32)
        ws = torch.empty(k.temporal_audio_workspace(N), **f32)
        with _DeviceGuard(v):
            k.temporal_audio(as_array(v, "v"), as_array(vpe, "vpe"), as_array(m, "m"), as_array(beta, "beta"),
                             as_array(values, "values"), as_array(pbar, "pbar"), as_array(out, "out"),
                             as_array(ws, "workspace"), stream_of(v))
        return out

    def temporal_visual(self, v, vpe, values, m, num_heads: int) -> torch.Tensor:
        T, N, C = v.shape
        k = self.kernels(T, num_heads, C, v)
        if k is None:
            return TorchAttentionOps.temporal_visual(v, vpe, values, m, num_heads)
        v, vpe, values = _inner_contiguous(v), _inner_contiguous(vpe.to(v.dtype)), _inner_contiguous(values.to(v.dtype))
        m = m.to(torch.float32).contiguous()
        out = torch.empty_like(v, memory_format=torch.contiguous_format)
        with _DeviceGuard(v):
            k.temporal_visual(as_array(v, "v"), as_array(vpe, "vpe"), as_array(values, "values"), as_array(m, "m"),
                              as_array(out, "out"), stream_of(v))
        return out

    def spatial_visual(self, v, vpe, m, num_heads: int) -> torch.Tensor:
        T, N, C = v.shape
        k = self.kernels(T, num_heads, C, v)
        if k is None:
            return TorchAttentionOps.spatial_visual(v, vpe, m, num_heads)
        v, vpe = _inner_contiguous(v), _inner_contiguous(vpe.to(v.dtype))
        m = m.to(torch.float32).contiguous()
        f32 = dict(dtype=torch.float32, device=v.device)
        out = torch.empty(T, num_heads, C, **f32)
        ws = torch.empty(k.spatial_visual_workspace(N), **f32)
        with _DeviceGuard(v):
            k.spatial_visual(as_array(v, "v"), as_array(vpe, "vpe"), as_array(m, "m"), as_array(out, "out"),
                             as_array(ws, "workspace"), stream_of(v))
        return out


class CudaFusedAVFusionBlock(FusedAVFusionBlock):
    """The exact-algebra block with its attention reductions on the CUDA kernels."""

    def __init__(self, block: nn.Module, ops: CudaAttentionOps | None = None) -> None:
        super().__init__(block)
        self.ops = ops or CudaAttentionOps()


# -- SAM global attention -----------------------------------------------------------------------


def decomposed_rel_tables(q: torch.Tensor, rel_pos_h, rel_pos_w, q_size, k_size):
    """SAM's ``add_decomposed_rel_pos`` terms, before they are added: q [B,L,heads,D] (unscaled)
    -> rel_h [B*heads, L, k_h], rel_w [B*heads, L, k_w], float32 (products in float32).

    The launcher takes float32 tables whatever the model computes in, so this runs with autocast
    off (under a bfloat16 autocast the einsums would come out bfloat16). For equal query and key
    grids (every encoder block) the gather index is the cached, on-device one of
    :func:`~.sdpa_attention.rel_table`: a forward builds nothing on the host."""
    (q_h, q_w), (k_h, k_w) = q_size, k_size
    B, L, heads, D = q.shape
    with torch.autocast(q.device.type, enabled=False):
        if (q_h, q_w) == (k_h, k_w):
            Rh = rel_table(q_h, rel_pos_h).to(torch.float32)  # [q_h, k_h, D]
            Rw = rel_table(q_w, rel_pos_w).to(torch.float32)  # [q_w, k_w, D]
        else:  # cross-grid attention (not in SAM's encoder): SAM's own gather
            from segment_anything.modeling.image_encoder import get_rel_pos

            Rh = get_rel_pos(q_h, k_h, rel_pos_h).to(torch.float32)
            Rw = get_rel_pos(q_w, k_w, rel_pos_w).to(torch.float32)
        r_q = q.permute(0, 2, 1, 3).reshape(B * heads, q_h, q_w, D).to(torch.float32)
        rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh).reshape(B * heads, L, k_h)
        rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw).reshape(B * heads, L, k_w)
    return rel_h, rel_w


class CudaRelPosAttention(nn.Module):
    """SAM ``Attention`` (global, decomposed rel-pos) on the flash kernel.

    Same parameters as the module it replaces. The kernel takes float16/bfloat16:
    a float32 model computes the attention in ``compute_dtype`` (projections stay
    float32). Where the kernel cannot run (it cannot be built here, or the input's
    grid, head dim or dtype is one it does not take) SAM's own module runs, with
    one warning.
    """

    launches_raw_kernels = True  # opaque to torch.compile (exact/compiled_blocks.py leaves its block eager)

    def __init__(self, attn: nn.Module, compute_dtype: torch.dtype = torch.float16,
                 kernel: RelPosAttention | None = None, warn: Warn | None = None) -> None:
        super().__init__()
        assert attn.use_rel_pos, "only the relative-position form is fused"
        self.num_heads = attn.num_heads
        self.scale = attn.scale
        self.qkv, self.proj = attn.qkv, attn.proj
        self.use_rel_pos = True
        self.rel_pos_h, self.rel_pos_w = attn.rel_pos_h, attn.rel_pos_w
        self.compute_dtype = compute_dtype
        self._kernel = kernel
        self._torch_form = (attn,)  # SAM's module, same parameters; in a tuple so it is no submodule (same state_dict)
        self.warn = warn or warn_once
        self._build_failed = False

    def kernel(self, like: torch.Tensor) -> RelPosAttention | None:
        """The kernel (built on ``like``'s device on first use), or None where it cannot be built."""
        if self._kernel is None and not self._build_failed:
            try:
                with _DeviceGuard(like):
                    self._kernel = RelPosAttention(device=_ordinal(like.device))
            except BUILD_ERRORS as e:
                self._build_failed = True
                self.warn(f"the flash attention kernel cannot be built ({_first_line(e)}); "
                          "SAM's global attention runs in PyTorch instead")
        return self._kernel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B,H,W,dim] -> [B,H,W,dim]."""
        B, Hg, Wg, _ = x.shape
        L, heads = Hg * Wg, self.num_heads
        dtype = x.dtype if x.dtype in (torch.float16, torch.bfloat16) else self.compute_dtype
        kernel = self.kernel(x)
        if kernel is None:
            return self._torch_form[0](x)
        why = kernel.unsupported_reason(DTYPE_NAMES.get(dtype, str(dtype)), self.qkv.out_features // (3 * heads), (Hg, Wg))
        if why:
            self.warn(f"{why}; SAM's global attention runs in PyTorch for this input")
            return self._torch_form[0](x)
        qkv = self.qkv(x).reshape(B, L, 3, heads, -1).to(dtype)  # [B, L, 3, heads, D], read in place
        q, k, v = qkv.unbind(2)  # [B, L, heads, D] views
        rel_h, rel_w = decomposed_rel_tables(q, self.rel_pos_h, self.rel_pos_w, (Hg, Wg), (Hg, Wg))
        out = torch.empty(B, L, heads, q.shape[-1], dtype=dtype, device=x.device)
        with _DeviceGuard(x):
            kernel(as_array(q, "q"), as_array(k, "k"), as_array(v, "v"), as_array(rel_h, "rel_h"),
                   as_array(rel_w, "rel_w"), as_array(out, "out"), (Hg, Wg), (Hg, Wg), self.scale, stream_of(x))
        return self.proj(out.reshape(B, Hg, Wg, -1).to(x.dtype))


def relpos_supported(attn: nn.Module, grid: int) -> bool:
    head_dim = attn.qkv.in_features // attn.num_heads
    return bool(getattr(attn, "use_rel_pos", False)) and head_dim in RelPosAttention.HEAD_DIMS and grid <= 64


def global_attention_dtype(model_dtype: torch.dtype, compute_dtype: torch.dtype | None) -> torch.dtype:
    """The precision the encoder's global attention computes in under :func:`use_cuda_kernels`: a
    float16/bfloat16 model's own dtype; in a float32 model ``compute_dtype`` (None: float32)."""
    if model_dtype in (torch.float16, torch.bfloat16):
        return model_dtype
    return compute_dtype or torch.float32


# -- the pass ---------------------------------------------------------------------------------------


def use_cuda_kernels(model: nn.Module, compute_dtype: torch.dtype | None = None,
                     stbava_kernels: Callable[..., StbavaKernels] | None = None,
                     relpos_kernel: RelPosAttention | None = None, *,
                     capability: tuple[int, int] | None = None, warn: Warn | None = None) -> dict[str, int]:
    """Swap the kernels into a built ST-BAVA model (in place); returns what was swapped.

    ``compute_dtype``: the global attention's precision when the model is float32. The flash
    kernel computes in float16 or bfloat16 only, so None or ``torch.float32`` (the default) keeps
    SAM's PyTorch attention in float32 there; ``torch.float16``/``torch.bfloat16`` runs it on the
    kernel. A float16/bfloat16 model computes it in its own dtype (:func:`global_attention_dtype`).

    A CUDA model on a GPU below compute capability 8.0 gets nothing swapped (one warning). The
    flash kernel is built here (not in a forward pass); one that cannot be built leaves SAM's
    attention in place. ``stbava_kernels``/``relpos_kernel``: injected kernels (tests: host
    emulation on CPU tensors); ``capability``: the GPU's instead of asking torch; ``warn``: where
    the fallback lines go (default: stderr, once each).
    """
    from ..reference.fusion import AVFusionBlock

    warn = warn or warn_once
    swapped = {"fusion_blocks": 0, "global_attention": 0}
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    if device.type == "cuda" or capability is not None:
        reason = kernels_unavailable(device, capability)
        if reason:
            warn(f"{reason}; the exact-algebra PyTorch forms run instead")
            return swapped
    on_gpu = device.type == "cuda"

    if on_gpu or stbava_kernels is not None:
        ops = CudaAttentionOps(stbava_kernels, warn)
        for i, layer in enumerate(model.layers):
            if type(layer) in (AVFusionBlock, FusedAVFusionBlock):
                model.layers[i] = CudaFusedAVFusionBlock(layer, ops)
                swapped["fusion_blocks"] += 1

    grid = model.config.grid
    attn_dtype = global_attention_dtype(param.dtype if param is not None else torch.float32, compute_dtype)
    blocks = [blk for blk in model.image_encoder.blocks
              if blk.window_size == 0 and not isinstance(blk.attn, CudaRelPosAttention) and relpos_supported(blk.attn, grid)]
    if attn_dtype not in (torch.float16, torch.bfloat16) or not blocks or not (on_gpu or relpos_kernel is not None):
        return swapped
    kernel = relpos_kernel
    if kernel is None:
        try:
            with torch.cuda.device(device):
                kernel = RelPosAttention(device=_ordinal(device))
        except BUILD_ERRORS as e:
            warn(f"the flash attention kernel cannot be built ({_first_line(e)}); SAM's global attention runs in PyTorch instead")
            return swapped
    for blk in blocks:
        why = kernel.unsupported_reason(DTYPE_NAMES[attn_dtype], blk.attn.qkv.in_features // blk.attn.num_heads)
        if why:
            warn(f"{why}; SAM's global attention runs in PyTorch instead")
            break
        blk.attn = CudaRelPosAttention(blk.attn, attn_dtype, kernel, warn)
        swapped["global_attention"] += 1
    return swapped
