"""Device and pinned host buffers, a stream and CUDA graphs through cuda-python's runtime API.

Everything the tensorrt backend needs from CUDA, with every call checked
(:func:`check`, after TensorRT's ``samples/python/common_runtime.py``
``cuda_call``): a failing call raises :class:`~avs_engine.kernels.nvrtc.CudaError`
(a :class:`BackendError`) naming the call and CUDA's error name. No torch;
``cuda.bindings.runtime`` is imported on first use, so importing this module
touches nothing.
"""

from __future__ import annotations

import ctypes
from typing import Callable

import numpy as np

from ..errors import BackendError
from ..errors import CudaError

# cuda.bindings exists from 12.6.1; from 12.8 the [all] extra brings NVRTC (the fused kernels). cuda-python 12.x
# needs an NVIDIA driver >= 525.60.13, 13.x (pip's default) >= 580.65.06: docs/tensorrt.md.
CUDA_INSTALL = "pip install 'cuda-python[all]>=12.8'"


def cudart():
    """``cuda.bindings.runtime``, or one :class:`BackendError` line naming the install."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        raise BackendError(f"cuda-python is not installed ({CUDA_INSTALL})") from None
    return runtime


def check(result, what: str):
    """Check a cuda-python result tuple ``(err, *values)``; return None, the value, or a tuple."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise CudaError(f"{what} failed: {error_name(err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def error_name(err) -> str:
    try:
        rt = cudart()
        name = rt.cudaGetErrorName(err)[1].decode()
        text = rt.cudaGetErrorString(err)[1].decode()
        return f"{name} ({text})"
    except Exception:  # the text is best effort; the code is still reported
        return repr(err)


# -- the device ------------------------------------------------------------------------------------


def device_count() -> int:
    """Number of CUDA GPUs; one :class:`BackendError` line when there is none or no usable driver."""
    rt = cudart()
    err, n = rt.cudaGetDeviceCount()
    if int(err) != 0:
        raise BackendError(f"no CUDA GPU usable here (cudaGetDeviceCount: {error_name(err)})")
    if n == 0:
        raise BackendError("no CUDA GPU found (cudaGetDeviceCount returned 0)")
    return int(n)


def use_device(device: int) -> None:
    """Make ``device`` current for this thread (after checking it exists)."""
    n = device_count()
    if not 0 <= device < n:
        raise BackendError(f"GPU {device} does not exist (this machine has {n}: 0..{n - 1})")
    check(cudart().cudaSetDevice(device), f"cudaSetDevice({device})")


def device_info(device: int = 0) -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of ``device``."""
    prop = check(cudart().cudaGetDeviceProperties(device), f"cudaGetDeviceProperties({device})")
    name = prop.name
    if isinstance(name, (bytes, bytearray)):
        name = bytes(name).split(b"\0", 1)[0].decode(errors="replace")
    return str(name), f"{prop.major}.{prop.minor}"


# -- memory ----------------------------------------------------------------------------------------


class _Buffer:
    """``nbytes`` from a CUDA allocator; grows on demand, never shrinks."""

    _alloc, _release = "cudaMalloc", "cudaFree"  # cudart function names

    def __init__(self, nbytes: int, name: str = "buffer") -> None:
        self.name = name
        self.ptr = 0
        self.nbytes = 0
        self.ensure(nbytes)

    def ensure(self, nbytes: int) -> bool:
        """At least ``nbytes``; returns True when the buffer moved (its pointer changed)."""
        if nbytes <= self.nbytes and self.ptr:
            return False
        self.free()
        alloc = getattr(cudart(), self._alloc)
        self.ptr = int(check(alloc(max(int(nbytes), 1)), f"{self._alloc}({nbytes} bytes for '{self.name}')"))
        self.nbytes = int(nbytes)
        return True

    def free(self) -> None:
        if self.ptr:
            check(getattr(cudart(), self._release)(self.ptr), f"{self._release}('{self.name}')")
            self.ptr, self.nbytes = 0, 0


class DeviceBuffer(_Buffer):
    """``nbytes`` of device memory (cudaMalloc); grows on demand, never shrinks."""


class PinnedBuffer(_Buffer):
    """``nbytes`` of page-locked host memory (cudaMallocHost), seen as numpy arrays."""

    _alloc, _release = "cudaMallocHost", "cudaFreeHost"

    def __init__(self, nbytes: int, name: str = "pinned") -> None:
        super().__init__(nbytes, name)

    def array(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A numpy view of the first bytes as ``shape``/``dtype`` (valid until the buffer moves)."""
        dtype = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        assert n <= self.nbytes, f"pinned buffer '{self.name}' holds {self.nbytes} bytes, view needs {n}"
        raw = (ctypes.c_uint8 * max(n, 1)).from_address(self.ptr)
        return np.frombuffer(raw, dtype=np.uint8, count=n).view(dtype).reshape(shape)


# -- stream, copies, graphs --------------------------------------------------------------------------


class Stream:
    """One non-blocking CUDA stream; ``handle`` is the integer TensorRT and the kernels take."""

    def __init__(self) -> None:
        rt = cudart()
        self._stream = check(rt.cudaStreamCreateWithFlags(rt.cudaStreamNonBlocking), "cudaStreamCreateWithFlags")
        self.handle = int(self._stream)

    def synchronize(self) -> None:
        check(cudart().cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def copy_to_device(self, dst_ptr: int, src_ptr: int, nbytes: int, what: str = "") -> None:
        rt = cudart()
        check(rt.cudaMemcpyAsync(dst_ptr, src_ptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream),
              f"cudaMemcpyAsync(host->device {what})")

    def copy_to_host(self, dst_ptr: int, src_ptr: int, nbytes: int, what: str = "") -> None:
        rt = cudart()
        check(rt.cudaMemcpyAsync(dst_ptr, src_ptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream),
              f"cudaMemcpyAsync(device->host {what})")

    def destroy(self) -> None:
        if self._stream is not None:
            check(cudart().cudaStreamDestroy(self._stream), "cudaStreamDestroy")
            self._stream, self.handle = None, 0


class Event:
    """A timing CUDA event recorded on a :class:`Stream` (for per-stage clocks without synchronising)."""

    def __init__(self, stream: Stream) -> None:
        rt = cudart()
        self.stream = stream
        self._event = check(rt.cudaEventCreate(), "cudaEventCreate")

    def record(self) -> None:
        check(cudart().cudaEventRecord(self._event, self.stream._stream), "cudaEventRecord")

    def synchronize(self) -> None:
        check(cudart().cudaEventSynchronize(self._event), "cudaEventSynchronize")

    def elapsed_s(self, later: "Event") -> float:
        ms = check(cudart().cudaEventElapsedTime(self._event, later._event), "cudaEventElapsedTime")
        return float(ms) / 1e3

    def __del__(self) -> None:
        event, self._event = getattr(self, "_event", None), None
        if event is not None:
            try:
                cudart().cudaEventDestroy(event)
            except Exception:  # interpreter shutdown: the driver may be gone already
                pass


class CudaGraph:
    """The work ``enqueue`` puts on ``stream``, captured once (cudaStreamBeginCapture ->
    cudaStreamEndCapture -> cudaGraphInstantiate) and replayed with :meth:`launch`.

    Replays use the same device addresses and shapes as the capture: the owner
    recaptures when a buffer moves or T changes.
    """

    def __init__(self, stream: Stream, enqueue: Callable[[], None]) -> None:
        rt = cudart()
        self.stream = stream
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
        check(rt.cudaStreamBeginCapture(stream._stream, mode), "cudaStreamBeginCapture")
        try:
            enqueue()
        except BaseException:
            rt.cudaStreamEndCapture(stream._stream)  # abandon the capture so the stream stays usable; the error is enqueue's
            raise
        graph = check(rt.cudaStreamEndCapture(stream._stream), "cudaStreamEndCapture")
        self._graph = graph
        self._exec = check(rt.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")

    def launch(self) -> None:
        check(cudart().cudaGraphLaunch(self._exec, self.stream._stream), "cudaGraphLaunch")

    def destroy(self) -> None:
        rt = cudart()
        if self._exec is not None:
            check(rt.cudaGraphExecDestroy(self._exec), "cudaGraphExecDestroy")
            self._exec = None
        if self._graph is not None:
            check(rt.cudaGraphDestroy(self._graph), "cudaGraphDestroy")
            self._graph = None
