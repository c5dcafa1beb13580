"""Validating launchers of the avs-engine kernels on raw device pointers (docs/kernels.md).

Each kernel takes one plain struct (``csrc/params.h``), mirrored here with
ctypes; a CPU test compiles params.h with the host compiler and compares
sizes and offsets. A launcher checks names, dtypes, shapes, strides and
alignment of every array (:class:`DeviceArray`: pointer, shape, strides in
elements, dtype), picks the grid from the geometry the .cu exports
(``__constant__`` ints, read once), and launches on the caller's stream with
``cuLaunchKernel``; every CUDA call is checked. No torch: ``torch_ops`` and the
tensorrt backend both call these.
"""

from __future__ import annotations

import ctypes
from ctypes import c_float, c_int, c_longlong, c_void_p
from dataclasses import dataclass

from ..errors import ShapeError
from ..errors import CudaError
from .nvrtc import KernelSource, cuda_call, load_module

DTYPE_SUFFIX = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}
ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}
STATIC_SMEM_LIMIT = 48 * 1024  # bytes of static __shared__ per block: ptxas refuses more ("uses too much shared data")


# -- parameter structs (field order and types exactly as in csrc/params.h) ------------------------


class TemporalAudioParams(ctypes.Structure):
    _fields_ = [
        ("v", c_void_p), ("vpe", c_void_p), ("m", c_void_p), ("beta", c_void_p), ("partial", c_void_p),
        ("v_frame_stride", c_longlong), ("v_pixel_stride", c_longlong), ("vpe_pixel_stride", c_longlong),
        ("T", c_int), ("N", c_int), ("C", c_int), ("H", c_int), ("num_tiles", c_int),
    ]


class TemporalAudioCombineParams(ctypes.Structure):
    _fields_ = [
        ("partial", c_void_p), ("values", c_void_p), ("pbar", c_void_p), ("out", c_void_p),
        ("T", c_int), ("N", c_int), ("C", c_int), ("H", c_int), ("num_tiles", c_int),
    ]


class TemporalVisualParams(ctypes.Structure):
    _fields_ = [
        ("v", c_void_p), ("vpe", c_void_p), ("values", c_void_p), ("m", c_void_p), ("out", c_void_p),
        ("v_frame_stride", c_longlong), ("v_pixel_stride", c_longlong), ("vpe_pixel_stride", c_longlong),
        ("values_frame_stride", c_longlong), ("values_pixel_stride", c_longlong),
        ("out_frame_stride", c_longlong), ("out_pixel_stride", c_longlong),
        ("T", c_int), ("N", c_int), ("C", c_int), ("H", c_int),
    ]


class SpatialVisualParams(ctypes.Structure):
    _fields_ = [
        ("v", c_void_p), ("vpe", c_void_p), ("m", c_void_p),
        ("partial_max", c_void_p), ("partial_sum", c_void_p), ("partial_acc", c_void_p),
        ("v_frame_stride", c_longlong), ("v_pixel_stride", c_longlong), ("vpe_pixel_stride", c_longlong),
        ("T", c_int), ("N", c_int), ("C", c_int), ("H", c_int), ("num_splits", c_int), ("pixels_per_warp", c_int),
    ]


class SpatialVisualCombineParams(ctypes.Structure):
    _fields_ = [
        ("partial_max", c_void_p), ("partial_sum", c_void_p), ("partial_acc", c_void_p), ("out", c_void_p),
        ("T", c_int), ("C", c_int), ("H", c_int), ("num_splits", c_int),
    ]


class RelPosAttnParams(ctypes.Structure):
    _fields_ = [
        ("q", c_void_p), ("k", c_void_p), ("v", c_void_p), ("rel_h", c_void_p), ("rel_w", c_void_p), ("out", c_void_p),
        ("q_batch_stride", c_longlong), ("q_token_stride", c_longlong), ("q_head_stride", c_longlong),
        ("k_batch_stride", c_longlong), ("k_token_stride", c_longlong), ("k_head_stride", c_longlong),
        ("v_batch_stride", c_longlong), ("v_token_stride", c_longlong), ("v_head_stride", c_longlong),
        ("o_batch_stride", c_longlong), ("o_token_stride", c_longlong), ("o_head_stride", c_longlong),
        ("rel_h_bh_stride", c_longlong), ("rel_w_bh_stride", c_longlong),
        ("B", c_int), ("heads", c_int), ("q_h", c_int), ("q_w", c_int), ("k_h", c_int), ("k_w", c_int),
        ("scale", c_float),
    ]


PARAM_STRUCTS = {
    cls.__name__: cls
    for cls in (
        TemporalAudioParams, TemporalAudioCombineParams, TemporalVisualParams,
        SpatialVisualParams, SpatialVisualCombineParams, RelPosAttnParams,
    )
}


# -- arrays --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceArray:
    """A strided view of device memory: what a launcher needs to know about a tensor."""

    ptr: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]  # in elements
    dtype: str  # "float32" | "float16" | "bfloat16"
    name: str = "array"

    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def _check(arr: DeviceArray, name: str, shape: tuple, dtypes: tuple[str, ...], align: int = 4) -> None:
    """Shape (None = any), dtype, unit innermost stride, non-null aligned pointer."""
    if not isinstance(arr, DeviceArray):
        raise ShapeError(f"{name}: expected a DeviceArray, got {type(arr).__name__}")
    if arr.dtype not in dtypes:
        raise ShapeError(f"{name}: dtype {arr.dtype}, expected {' or '.join(dtypes)}")
    if len(arr.shape) != len(shape) or any(e is not None and e != a for e, a in zip(shape, arr.shape)):
        want = "[" + ", ".join("*" if e is None else str(e) for e in shape) + "]"
        raise ShapeError(f"{name}: shape {list(arr.shape)}, expected {want}")
    if len(arr.strides) != len(arr.shape) or (arr.shape and arr.shape[-1] > 1 and arr.strides[-1] != 1):
        raise ShapeError(f"{name}: innermost stride must be 1, got strides {arr.strides}")
    if arr.ptr == 0 or arr.ptr % align:
        raise ShapeError(f"{name}: pointer {arr.ptr:#x} is null or not {align}-byte aligned")


def _check_contiguous(arr: DeviceArray, name: str) -> None:
    expect, acc = [], 1
    for s in reversed(arr.shape):
        expect.append(acc)
        acc *= s
    if tuple(reversed(expect)) != tuple(arr.strides) and arr.numel() > 1:
        raise ShapeError(f"{name}: must be contiguous (strides {tuple(reversed(expect))}), got {arr.strides}")


def _check_workspace(arr: DeviceArray, name: str, floats: int) -> None:
    if arr.dtype != "float32" or arr.numel() < floats or arr.ptr == 0 or arr.ptr % 16:
        raise ShapeError(f"{name}: need a 16-byte aligned float32 workspace of >= {floats} elements, "
                         f"got {arr.dtype} x {arr.numel()}")


def _pixel_stride(arr: DeviceArray, name: str) -> int:
    """Pixel stride of a [1, N, C] or [N, C] positional encoding."""
    if len(arr.shape) == 3:
        if arr.shape[0] != 1:
            raise ShapeError(f"{name}: leading dim must be 1, got shape {list(arr.shape)}")
        return arr.strides[1]
    return arr.strides[0]


def launch(fn, name: str, grid: tuple[int, int, int], block: tuple[int, int, int], smem: int, stream: int, params) -> None:
    """cuLaunchKernel with one by-value struct argument; checked."""
    from cuda.bindings import driver

    if min(grid) < 1 or grid[0] >= 2**31 or grid[1] > 65535 or grid[2] > 65535:
        raise CudaError(f"{name}: grid {grid} out of range")
    cuda_call(
        driver.cuLaunchKernel(fn, *grid, *block, smem, driver.CUstream(stream), ((params,), (None,)), 0),
        f"cuLaunchKernel({name})",
    )


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# -- ST-BAVA attention -----------------------------------------------------------------------------


def stbava_static_smem(T: int, H: int, C: int) -> dict[str, int]:
    """Bytes of static shared memory of each ST-BAVA kernel at (T, H, C): the ``__shared__`` arrays
    of temporal_attention.cu and spatial_attention.cu, in floats, as written there (a CPU test
    compares these with ptxas' own report)."""
    HT = H * T
    vis_pixels = 32 if T <= 5 else 16
    vis_threads = vis_pixels * T
    floats = {
        # xs[128][32 + 1], ms[32][HT], warp_sums[128 / 32][HT]
        "temporal_audio_partial": 128 * 33 + 32 * HT + 4 * HT,
        "temporal_audio_combine": HT,  # pbar[HT]
        # xs[vis_threads][16 + 1], ms[16][HT], ps[vis_pixels][T][HT + 1]
        "temporal_visual": vis_threads * 17 + 16 * HT + vis_pixels * T * (HT + 1),
        # ms[C][H + 1], warp_max[8][H], block_sum[H], block_acc[H][C]
        "spatial_visual_partial": C * (H + 1) + 8 * H + H + H * C,
        "spatial_visual_combine": 128 * H,  # weight[128][H]
    }
    return {k: 4 * v for k, v in floats.items()}


STBAVA_KERNELS = (
    *(f"temporal_audio_partial_{s}" for s in DTYPE_SUFFIX.values()), "temporal_audio_combine",
    *(f"temporal_visual_{s}" for s in DTYPE_SUFFIX.values()),
    *(f"spatial_visual_partial_{s}" for s in DTYPE_SUFFIX.values()), "spatial_visual_combine",
)


class StbavaKernels:
    """The ST-BAVA attention kernels specialised for (T, H, C), loaded on the current device.

    Everything a launch needs (modules, functions, launch geometry) is fetched here, so that a
    launch is only ``cuLaunchKernel`` (nothing synchronous inside a CUDA-graph capture)."""

    def __init__(self, T: int, H: int, C: int, device: int = 0) -> None:
        self.check_shape(T, H, C)
        self.T, self.H, self.C = T, H, C
        self.temporal = self.load(KernelSource("temporal_attention.cu", (("AVS_T", T), ("AVS_H", H), ("AVS_C", C))), device)
        self.spatial = self.load(KernelSource("spatial_attention.cu", (("AVS_H", H), ("AVS_C", C))), device)
        self.audio_pixels, self.vis_pixels, self.vis_threads, ht = self.temporal.constant_ints("temporal_geometry", 4)
        self.warps, self.spatial_threads, self.max_splits = self.spatial.constant_ints("spatial_geometry", 3)
        if ht != H * T:
            raise CudaError(f"temporal_attention module built for H*T={ht}, expected {H * T}")
        self.functions = {name: (self.spatial if name.startswith("spatial") else self.temporal).function(name)
                          for name in STBAVA_KERNELS}

    @staticmethod
    def load(src: KernelSource, device: int):
        """The built module of ``src`` (a CUBIN loaded on ``device``; the CPU emulator overrides)."""
        return load_module(src, device)

    @staticmethod
    def check_shape(T: int, H: int, C: int) -> None:
        """Raise ShapeError unless the kernels can be built for (T, H, C): the static limits of the
        sources and 48 KiB of static shared memory per kernel (for example T=5, 12 heads, C=96 needs
        53,760 bytes in temporal_visual)."""
        if not 1 <= T <= 8:
            raise ShapeError(f"fused kernels take T in 1..8 frames, got {T}")
        if H < 1 or C % H or C % 32 or H * T > 64 or H * (C // 32) > 64:
            raise ShapeError(f"fused kernels need C % 32 == 0, C % H == 0, H*T <= 64, H*C/32 <= 64; got T={T} H={H} C={C}")
        over = {k: b for k, b in stbava_static_smem(T, H, C).items() if b > STATIC_SMEM_LIMIT}
        if over:
            name, size = max(over.items(), key=lambda kv: kv[1])
            raise ShapeError(f"fused kernels cannot be built for T={T} H={H} C={C}: {name} would need {size} bytes of "
                             f"static shared memory (limit {STATIC_SMEM_LIMIT})")

    def _launch(self, name: str, grid, block, smem: int, stream: int, params) -> None:
        launch(self.functions[name], name, grid, block, smem, stream, params)

    def _check_tokens(self, v: DeviceArray, vpe: DeviceArray, N: int | None = None) -> tuple[int, str]:
        _check(v, "v", (self.T, N, self.C), tuple(DTYPE_SUFFIX))
        _check(vpe, "vpe", (1, v.shape[1], self.C) if len(vpe.shape) == 3 else (v.shape[1], self.C), (v.dtype,))
        if v.shape[1] < 1:
            raise ShapeError("v: no pixels")
        return v.shape[1], v.dtype

    # temporal, audio update ------------------------------------------------------------------

    def temporal_audio_workspace(self, N: int) -> int:
        """float32 elements of workspace for :meth:`temporal_audio`."""
        return self.T * _cdiv(N, self.audio_pixels) * self.H * self.T

    def temporal_audio(self, v, vpe, m, beta, values, pbar, out, workspace, stream: int) -> None:
        """Mean over pixels of the temporal audio-update attention (partial + combine kernels).

        v [T,N,C] f32/f16/bf16, vpe [1,N,C] or [N,C] same dtype, m [C,H*T] f32, beta [H*T] f32,
        values [T,C] f32 -> pbar [T,H*T] f32 (mean weights), out [T,C] f32 (before out_proj).
        """
        T, H, C = self.T, self.H, self.C
        N, dtype = self._check_tokens(v, vpe)
        for arr, name, shape in ((m, "m", (C, H * T)), (beta, "beta", (H * T,)), (values, "values", (T, C)),
                                 (pbar, "pbar", (T, H * T)), (out, "out", (T, C))):
            _check(arr, name, shape, ("float32",))
            _check_contiguous(arr, name)
        tiles = _cdiv(N, self.audio_pixels)
        _check_workspace(workspace, "workspace", self.temporal_audio_workspace(N))
        p = TemporalAudioParams(
            v.ptr, vpe.ptr, m.ptr, beta.ptr, workspace.ptr, v.strides[0], v.strides[1], _pixel_stride(vpe, "vpe"),
            T, N, C, H, tiles,
        )
        name = f"temporal_audio_partial_{DTYPE_SUFFIX[dtype]}"
        self._launch(name, (tiles, T, 1), (self.audio_pixels, 1, 1), 0, stream, p)
        c = TemporalAudioCombineParams(workspace.ptr, values.ptr, pbar.ptr, out.ptr, T, N, C, H, tiles)
        self._launch("temporal_audio_combine", (T, 1, 1), (256, 1, 1), 0, stream, c)

    # temporal, visual update -----------------------------------------------------------------

    def temporal_visual(self, v, vpe, values, m, out, stream: int) -> None:
        """Per-pixel attention of the T audio queries over the pixel's T frames.

        v [T,N,C], vpe [1,N,C]/[N,C], values [T,N,C] (projected, same dtype), m [C,H*T] f32
        -> out [T,N,C] same dtype (before out_proj).
        """
        T, H, C = self.T, self.H, self.C
        N, dtype = self._check_tokens(v, vpe)
        _check(values, "values", (T, N, C), (dtype,))
        _check(out, "out", (T, N, C), (dtype,))
        _check(m, "m", (C, H * T), ("float32",))
        _check_contiguous(m, "m")
        p = TemporalVisualParams(
            v.ptr, vpe.ptr, values.ptr, m.ptr, out.ptr, v.strides[0], v.strides[1], _pixel_stride(vpe, "vpe"),
            values.strides[0], values.strides[1], out.strides[0], out.strides[1], T, N, C, H,
        )
        name = f"temporal_visual_{DTYPE_SUFFIX[dtype]}"
        grid = (_cdiv(N, self.vis_pixels), 1, 1)
        self._launch(name, grid, (self.vis_threads, 1, 1), 0, stream, p)

    # spatial, visual update ------------------------------------------------------------------

    def spatial_splits(self, N: int) -> int:
        """Blocks per frame: about 16 pixels per warp, at most the combine kernel's limit."""
        return max(1, min(self.max_splits, _cdiv(N, self.warps * 16)))

    def spatial_visual_workspace(self, N: int) -> int:
        return self.T * self.spatial_splits(N) * self.H * (self.C + 2)

    def spatial_visual(self, v, vpe, m, out, workspace, stream: int, num_splits: int | None = None) -> None:
        """Per frame and head, softmax over the N pixels and weighted mean of raw v.

        v [T,N,C], vpe [1,N,C]/[N,C], m [T,C,H] f32 -> out [T,H,C] f32 (vbar).
        """
        T, H, C = self.T, self.H, self.C
        N, dtype = self._check_tokens(v, vpe)
        _check(m, "m", (T, C, H), ("float32",))
        _check_contiguous(m, "m")
        _check(out, "out", (T, H, C), ("float32",))
        _check_contiguous(out, "out")
        splits = num_splits or self.spatial_splits(N)
        if not 1 <= splits <= self.max_splits:
            raise ShapeError(f"num_splits must be in 1..{self.max_splits}, got {splits}")
        per_warp = _cdiv(N, splits * self.warps)
        n_acc, n_ml = T * splits * H * C, T * splits * H
        _check_workspace(workspace, "workspace", n_acc + 2 * n_ml)
        acc_ptr = workspace.ptr
        max_ptr = acc_ptr + 4 * n_acc
        sum_ptr = max_ptr + 4 * n_ml
        p = SpatialVisualParams(
            v.ptr, vpe.ptr, m.ptr, max_ptr, sum_ptr, acc_ptr, v.strides[0], v.strides[1], _pixel_stride(vpe, "vpe"),
            T, N, C, H, splits, per_warp,
        )
        name = f"spatial_visual_partial_{DTYPE_SUFFIX[dtype]}"
        self._launch(name, (splits, T, 1), (self.spatial_threads, 1, 1), 0, stream, p)
        c = SpatialVisualCombineParams(max_ptr, sum_ptr, acc_ptr, out.ptr, T, C, H, splits)
        self._launch("spatial_visual_combine", (T, 1, 1), (self.spatial_threads, 1, 1), 0, stream, c)


# -- SAM global attention --------------------------------------------------------------------------


class RelPosAttention:
    """FlashAttention-2 style attention with SAM's decomposed relative-position bias."""

    HEAD_DIMS = (64, 80)
    DTYPES = ("float16", "bfloat16")

    def __init__(self, device: int = 0) -> None:
        from cuda.bindings import driver

        self.module = load_module(KernelSource("relpos_flash_attention.cu"), device)
        self.block_rows, self.block_keys, self.threads, self.max_rel = self.module.constant_ints("relpos_geometry", 4)
        dev = cuda_call(driver.cuCtxGetDevice(), "cuCtxGetDevice")
        self.smem_optin = cuda_call(
            driver.cuDeviceGetAttribute(driver.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev),
            "cuDeviceGetAttribute",
        )
        # Every variant is made ready here, not at its first launch: reading its shared-memory size is a
        # synchronous device-to-host copy and the opt-in is an attribute change, and either one inside a
        # CUDA-graph capture invalidates the capture.
        self._ready: dict[str, tuple[object, int]] = {}
        self.unsupported: dict[str, str] = {}
        attr = driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        for dtype in self.DTYPES:
            for D in self.HEAD_DIMS:
                name = self.kernel_name(dtype, D)
                fn = self.module.function(name)
                smem = self.module.constant_ints(f"{name}_smem_bytes", 1)[0]
                if smem > self.smem_optin:
                    self.unsupported[name] = f"{name} needs {smem} bytes of shared memory; this GPU allows {self.smem_optin}"
                    continue
                cuda_call(driver.cuFuncSetAttribute(fn, attr, smem), f"cuFuncSetAttribute({name})")
                self._ready[name] = (fn, smem)

    @staticmethod
    def kernel_name(dtype: str, head_dim: int) -> str:
        return f"relpos_flash_attn_{DTYPE_SUFFIX[dtype]}_d{head_dim}"

    def unsupported_reason(self, dtype: str, head_dim: int, key_grid: tuple[int, int] | None = None) -> str | None:
        """Why this kernel cannot take ``dtype``/``head_dim`` (and the key grid), or None."""
        if dtype not in self.DTYPES:
            return f"the flash kernel computes in float16 or bfloat16, not {dtype}"
        if head_dim not in self.HEAD_DIMS:
            return f"the flash kernel takes head dim {' or '.join(map(str, self.HEAD_DIMS))}, not {head_dim}"
        if key_grid is not None and not all(1 <= g <= self.max_rel for g in key_grid):
            return f"the flash kernel takes key grids up to {self.max_rel}x{self.max_rel}, not {key_grid[0]}x{key_grid[1]}"
        return getattr(self, "unsupported", {}).get(self.kernel_name(dtype, head_dim))

    def _launch(self, name: str, grid, block, stream: int, params) -> None:
        """Launch a variant made ready at construction (dynamic shared memory opted in)."""
        if name not in self._ready:
            raise CudaError(self.unsupported.get(name, f"{name}: no such kernel variant"))
        fn, smem = self._ready[name]
        launch(fn, name, grid, block, smem, stream, params)

    def __call__(self, q, k, v, rel_h, rel_w, out, q_size: tuple[int, int], k_size: tuple[int, int],
                 scale: float, stream: int) -> None:
        """q [B,Lq,heads,D], k/v [B,Lk,heads,D] (f16/bf16, any token/head/batch strides, head dim
        contiguous), rel_h [B*heads,Lq,k_h] f32, rel_w [B*heads,Lq,k_w] f32 (rows contiguous)
        -> out [B,Lq,heads,D] (same dtype)."""
        (q_h, q_w), (k_h, k_w) = q_size, k_size
        Lq, Lk = q_h * q_w, k_h * k_w
        dtype = q.dtype
        if dtype not in ("float16", "bfloat16"):
            raise ShapeError(f"q: dtype {dtype}, expected float16 or bfloat16")
        B, _, heads, D = q.shape
        if D not in self.HEAD_DIMS:
            raise ShapeError(f"q: head dim {D}, supported {self.HEAD_DIMS}")
        if not (1 <= k_h <= self.max_rel and 1 <= k_w <= self.max_rel):
            raise ShapeError(f"key grid {k_size}: each side must be 1..{self.max_rel}")
        for arr, name, L in ((q, "q", Lq), (k, "k", Lk), (v, "v", Lk), (out, "out", Lq)):
            _check(arr, name, (B, L, heads, D), (dtype,), align=16)
            if any(s % 8 for s in arr.strides[:3]):
                raise ShapeError(f"{name}: batch/token/head strides must be multiples of 8 elements, got {arr.strides}")
        for arr, name, cols in ((rel_h, "rel_h", k_h), (rel_w, "rel_w", k_w)):
            _check(arr, name, (B * heads, Lq, cols), ("float32",))
            if arr.strides[1] != cols:
                raise ShapeError(f"{name}: rows must be contiguous (row stride {cols}), got {arr.strides}")
        name = self.kernel_name(dtype, D)
        p = RelPosAttnParams(
            q.ptr, k.ptr, v.ptr, rel_h.ptr, rel_w.ptr, out.ptr,
            *q.strides[:3], *k.strides[:3], *v.strides[:3], *out.strides[:3],  # (batch, token, head) each
            rel_h.strides[0], rel_w.strides[0], B, heads, q_h, q_w, k_h, k_w, scale,
        )
        grid = (_cdiv(Lq, self.block_rows), B * heads, 1)
        self._launch(name, grid, (self.threads, 1, 1), stream, p)
