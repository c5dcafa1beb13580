"""A small stand-in for ``cuda.bindings.driver``: enough of the driver API for the kernels' host code
(contexts, devices, module loading, globals, launches), so that its decisions can be tested without
a GPU: which context is made current, what is refused before compiling, what a launch calls.

It records every call in ``calls``. It proves nothing about the real driver's behaviour; the GPU
check (``benchmarks/gpu_check.py``) does that on a machine with a GPU.
"""

from __future__ import annotations

import ctypes
import enum
import types


class CUresult(enum.IntEnum):
    CUDA_SUCCESS = 0
    CUDA_ERROR_INVALID_IMAGE = 200
    CUDA_ERROR_NOT_FOUND = 500


class CUdevice_attribute(enum.IntEnum):
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
    CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97


class CUfunction_attribute(enum.IntEnum):
    CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8


OK = CUresult.CUDA_SUCCESS


def make_fake_driver(capabilities=None, current_device: int | None = None, refuse=(), optin: int = 232448,
                     constants: dict[str, list[int]] | None = None) -> types.ModuleType:
    """``capabilities``: device ordinal -> (major, minor) (default one sm_90 GPU);
    ``current_device``: whose primary context is current at the start (None: no context);
    ``refuse``: CUBIN images cuModuleLoadData rejects (CUDA_ERROR_INVALID_IMAGE);
    ``optin``: the opt-in shared memory per block; ``constants``: ``__constant__`` ints by name."""
    caps = dict(capabilities or {0: (9, 0)})
    d = types.ModuleType("cuda.bindings.driver")
    d.CUresult, d.CUdevice_attribute, d.CUfunction_attribute = CUresult, CUdevice_attribute, CUfunction_attribute
    d.calls = []
    d.current = None if current_device is None else 1000 + current_device  # context handle = 1000 + device
    d.loaded = []  # images loaded
    d.launches = []
    globals_ = dict(constants or {})
    tokens: dict[int, str] = {}

    def call(name, *args):
        d.calls.append((name, args))

    def cuInit(flags):
        call("cuInit", flags)
        return (OK,)

    def cuDeviceGet(i):
        call("cuDeviceGet", i)
        return (OK, i) if i in caps else (CUresult.CUDA_ERROR_NOT_FOUND, None)

    def cuCtxGetCurrent():
        call("cuCtxGetCurrent")
        return OK, d.current or 0

    def cuCtxGetDevice():
        call("cuCtxGetDevice")
        return OK, d.current - 1000

    def cuDevicePrimaryCtxRetain(dev):
        call("cuDevicePrimaryCtxRetain", dev)
        return OK, 1000 + dev

    def cuCtxSetCurrent(ctx):
        call("cuCtxSetCurrent", ctx)
        d.current = ctx
        return (OK,)

    def cuDeviceGetAttribute(attr, dev):
        call("cuDeviceGetAttribute", attr, dev)
        major, minor = caps[dev]
        value = {CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: major,
                 CUdevice_attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: minor,
                 CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: optin}[attr]
        return OK, value

    def cuDeviceGetName(n, dev):
        call("cuDeviceGetName", n, dev)
        return OK, f"Fake GPU sm_{caps[dev][0]}{caps[dev][1]}".encode().ljust(n, b"\0")

    def cuModuleLoadData(image):
        call("cuModuleLoadData", bytes(image))
        if bytes(image) in refuse:
            return CUresult.CUDA_ERROR_INVALID_IMAGE, None
        d.loaded.append(bytes(image))
        return OK, 5000 + len(d.loaded)

    def cuModuleGetFunction(module, name):
        call("cuModuleGetFunction", module, name)
        return OK, f"fn:{name.decode()}"

    def cuModuleGetGlobal(module, name):
        call("cuModuleGetGlobal", module, name)
        values = globals_.get(name.decode())
        if values is None:
            return CUresult.CUDA_ERROR_NOT_FOUND, None, None
        token = 9000 + len(tokens)
        tokens[token] = name.decode()
        return OK, token, 4 * len(values)

    def cuMemcpyDtoH(dst, src, size):
        call("cuMemcpyDtoH", dst, src, size)
        values = (ctypes.c_int * (size // 4))(*globals_[tokens[src]])
        ctypes.memmove(dst, values, size)
        return (OK,)

    def cuFuncSetAttribute(fn, attr, value):
        call("cuFuncSetAttribute", fn, attr, value)
        return (OK,)

    def cuLaunchKernel(fn, gx, gy, gz, bx, by, bz, smem, stream, params, extra):
        call("cuLaunchKernel", fn)
        d.launches.append((fn, (gx, gy, gz), (bx, by, bz), smem))
        return (OK,)

    def cuGetErrorName(err):
        return OK, CUresult(err).name.encode()

    def cuGetErrorString(err):
        return OK, b"fake driver error"

    for fn in (cuInit, cuDeviceGet, cuCtxGetCurrent, cuCtxGetDevice, cuDevicePrimaryCtxRetain, cuCtxSetCurrent,
               cuDeviceGetAttribute, cuDeviceGetName, cuModuleLoadData, cuModuleGetFunction, cuModuleGetGlobal,
               cuMemcpyDtoH, cuFuncSetAttribute, cuLaunchKernel, cuGetErrorName, cuGetErrorString):
        setattr(d, fn.__name__, fn)
    d.CUstream = lambda handle: handle
    return d


def install(monkeypatch, driver: types.ModuleType) -> types.ModuleType:
    """Make ``from cuda.bindings import driver`` give ``driver``, with a fresh module/context cache."""
    import cuda.bindings

    from avs_engine.kernels import nvrtc

    monkeypatch.setattr(cuda.bindings, "driver", driver, raising=False)
    monkeypatch.setitem(__import__("sys").modules, "cuda.bindings.driver", driver)
    monkeypatch.setattr(nvrtc, "_MODULES", {})
    monkeypatch.setattr(nvrtc, "_PRIMARY", {})
    return driver
