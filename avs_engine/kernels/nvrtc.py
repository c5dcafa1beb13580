"""CUDA C++ -> CUBIN for the running GPU, with an on-disk cache (docs/kernels.md).

NVRTC through cuda-python (``cuda.bindings.nvrtc``) compiles straight to a
CUBIN for the device's own architecture (``sm_XY``): NVRTC from a newer pip
CUDA emits PTX that an older driver may refuse to JIT (for example, PTX ISA 9.5
from NVRTC 13.5 on a CUDA 13.0 driver); a CUBIN has no such step. If NVRTC is
missing or fails, ``nvcc -cubin`` is tried. Every CUDA call goes through
:func:`cuda_call`, which raises :class:`CudaError` naming the call and the error.

The kernels need compute capability 8.0 or newer (:data:`MIN_COMPUTE_CAPABILITY`):
:func:`load_module` refuses an older GPU with :class:`UnsupportedDevice` before
compiling anything. The cache key holds the compilers' versions, and a cached
CUBIN the driver refuses to load is rebuilt once.

No torch here: the tensorrt backend uses these kernels too. cuda-python is
imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CudaError

CSRC = Path(__file__).parent / "csrc"
SOURCES = ("temporal_attention.cu", "spatial_attention.cu", "relpos_flash_attention.cu")
BASE_OPTIONS = ("-std=c++17", "-O3")  # nvcc spelling; NVRTC optimises by default
# The flash kernel uses cp.async and bf16 mma.sync.m16n8k16, which ptxas accepts only for sm_80 and newer;
# the ST-BAVA kernels are built and checked (devtools/ptxas.py) for sm_80 and sm_90 only. One floor for all.
MIN_COMPUTE_CAPABILITY = (8, 0)
# What a missing or unloadable compiler raises: cuda-pathfinder's DynamicLibNotFoundError (cuda-bindings 12.9+
# and 13.x, a RuntimeError) or the older bindings' own loader errors (RuntimeError, OSError), or no module at all.
COMPILER_MISSING = (ImportError, OSError, RuntimeError)


class UnsupportedDevice(CudaError):
    """The GPU is older than :data:`MIN_COMPUTE_CAPABILITY`: the kernels cannot be built for it."""


def arch_supported(arch: str) -> bool:
    """Whether ``sm_XY`` meets :data:`MIN_COMPUTE_CAPABILITY`."""
    digits = arch.removeprefix("sm_").rstrip("af")  # sm_90a, sm_100f: feature-suffixed targets
    major, minor = int(digits[:-1]), int(digits[-1])
    return (major, minor) >= MIN_COMPUTE_CAPABILITY


def unsupported_reason(arch: str, what: str = "this GPU") -> str | None:
    """One line saying why the kernels cannot run on ``arch``, or None."""
    if arch_supported(arch):
        return None
    lo = "%d.%d" % MIN_COMPUTE_CAPABILITY
    return (f"the fused CUDA kernels need compute capability {lo} or newer (cp.async and bf16 tensor-core mma); "
            f"{what} is {arch.removeprefix('sm_')[:-1]}.{arch[-1]}")


def cuda_call(result, what: str = "CUDA call"):
    """Check a cuda-python result tuple ``(err, *values)``; return the values (None, one, or a tuple)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    code = int(err)
    if code != 0:
        raise CudaError(f"{what} failed: {_error_text(err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _error_text(err) -> str:
    try:  # the error text is best effort: never let it hide the error (NVRTC's library may be the one missing)
        from cuda.bindings import driver

        if isinstance(err, driver.CUresult):
            _, name = driver.cuGetErrorName(err)
            _, text = driver.cuGetErrorString(err)
            return f"{name.decode()} ({text.decode()})"
        from cuda.bindings import nvrtc

        if isinstance(err, nvrtc.nvrtcResult):
            return nvrtc.nvrtcGetErrorString(err)[1].decode()
    except Exception:
        pass
    return repr(err)


def cache_dir() -> Path:
    """``$AVS_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/avs_engine/kernels`` (default ``~/.cache``)."""
    env = os.environ.get("AVS_KERNEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "avs_engine" / "kernels"


def cuda_include_dir() -> str | None:
    """Directory holding ``cuda_fp16.h`` (pip CUDA headers, else ``$CUDA_HOME/include``)."""
    try:
        from cuda.pathfinder import find_nvidia_header_directory

        found = find_nvidia_header_directory("cudart")
        if found:
            return str(found)
    except Exception:  # cuda-pathfinder missing or too old: fall through
        pass
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "include" / "cuda_fp16.h").is_file():
            return str(Path(root) / "include")
    return None


@dataclass(frozen=True)
class KernelSource:
    """One .cu file plus its compile-time defines (``{"AVS_T": 5}``)."""

    name: str
    defines: tuple[tuple[str, int], ...] = field(default=())

    @property
    def path(self) -> Path:
        return CSRC / self.name

    def define_flags(self) -> list[str]:
        return [f"-D{k}={v}" for k, v in self.defines]

    def digest(self, toolchain: str = "") -> str:
        """Hash of every file under csrc/ (the .cu and the headers it may include), the defines and
        ``toolchain`` (the compilers' versions, for the CUBIN cache)."""
        h = hashlib.sha256()
        for p in sorted(CSRC.iterdir()):
            if p.suffix in (".cu", ".cuh", ".h"):
                h.update(p.name.encode())
                h.update(p.read_bytes())
        h.update(self.name.encode())
        h.update(repr(self.defines).encode())
        if toolchain:
            h.update(toolchain.encode())
        return h.hexdigest()[:20]


# -- compilers ---------------------------------------------------------------------------------


def nvrtc_version() -> str | None:
    try:
        from cuda.bindings import nvrtc

        major, minor = cuda_call(nvrtc.nvrtcVersion(), "nvrtcVersion")
        return f"{major}.{minor}"
    except Exception:
        return None


def nvrtc_compile(src: KernelSource, arch: str) -> bytes:
    """CUBIN bytes for ``arch`` (e.g. ``"sm_90"``) with NVRTC. Raises CudaError with the log."""
    from cuda.bindings import nvrtc

    supported = cuda_call(nvrtc.nvrtcGetSupportedArchs(), "nvrtcGetSupportedArchs")
    if int(arch.removeprefix("sm_")) not in supported:
        raise CudaError(f"NVRTC {nvrtc_version()} cannot build CUBIN for {arch} (supports sm_{supported})")
    options = [f"--gpu-architecture={arch}", "-std=c++17", f"--include-path={CSRC}", *src.define_flags()]
    inc = cuda_include_dir()
    if inc:
        options.append(f"--include-path={inc}")
    prog = cuda_call(
        nvrtc.nvrtcCreateProgram(src.path.read_bytes(), src.name.encode(), 0, [], []), "nvrtcCreateProgram"
    )
    try:
        opts = [o.encode() for o in options]
        err, = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
        if int(err) != 0:
            size = cuda_call(nvrtc.nvrtcGetProgramLogSize(prog), "nvrtcGetProgramLogSize")
            log = b" " * size
            cuda_call(nvrtc.nvrtcGetProgramLog(prog, log), "nvrtcGetProgramLog")
            raise CudaError(f"NVRTC failed on {src.name} for {arch}:\n{log.decode(errors='replace').rstrip(chr(0))}")
        size = cuda_call(nvrtc.nvrtcGetCUBINSize(prog), "nvrtcGetCUBINSize")
        cubin = b" " * size
        cuda_call(nvrtc.nvrtcGetCUBIN(prog, cubin), "nvrtcGetCUBIN")
        return cubin
    finally:
        cuda_call(nvrtc.nvrtcDestroyProgram(prog), "nvrtcDestroyProgram")


def nvcc_path() -> str | None:
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    return shutil.which("nvcc")


def nvcc_version(nvcc: str | None = None) -> str | None:
    """``nvcc --version``'s full version (``13.0.88``), or None without nvcc."""
    nvcc = nvcc or nvcc_path()
    return _nvcc_version(nvcc) if nvcc else None


@functools.lru_cache(maxsize=None)
def _nvcc_version(nvcc: str) -> str | None:
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"release ([\d.]+), V([\d.]+)", out)
    return m.group(2) if m else None


def toolchain() -> str:
    """The versions of the compilers a CUBIN can come from (NVRTC, nvcc), for the cache key: a
    toolkit upgrade must not reuse CUBINs the old one built."""
    return f"nvrtc-{nvrtc_version() or 'none'}+nvcc-{nvcc_version() or 'none'}"


def nvcc_command(src: KernelSource, arch: str, out: Path, verbose_ptxas: bool = False) -> list[str]:
    nvcc = nvcc_path()
    if nvcc is None:
        raise CudaError("nvcc not found (set CUDA_HOME or put nvcc on PATH)")
    cmd = [nvcc, "-cubin", f"-arch={arch}", *BASE_OPTIONS, f"-I{CSRC}", *src.define_flags(), "-o", str(out), str(src.path)]
    if verbose_ptxas:
        cmd[1:1] = ["-Xptxas", "-v"]
    return cmd


def nvcc_compile(src: KernelSource, arch: str, verbose_ptxas: bool = False) -> tuple[bytes, str]:
    """CUBIN bytes and the compiler's stderr (ptxas report with ``verbose_ptxas``)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "k.cubin"
        proc = subprocess.run(nvcc_command(src, arch, out, verbose_ptxas), capture_output=True, text=True)
        if proc.returncode != 0:
            raise CudaError(f"nvcc failed on {src.name} for {arch}:\n{proc.stderr}")
        return out.read_bytes(), proc.stderr


def cache_path(src: KernelSource, arch: str) -> Path:
    """Where the CUBIN of ``src`` for ``arch`` is cached: keyed by source, defines, arch and compilers."""
    return cache_dir() / f"{src.path.stem}-{arch}-{src.digest(toolchain())}.cubin"


def compile_cubin(src: KernelSource, arch: str, use_cache: bool = True, rebuild: bool = False) -> bytes:
    """CUBIN for ``arch``: from the cache, else NVRTC, else nvcc; stored in the cache.

    ``rebuild``: compile even when a cached CUBIN exists, and replace it."""
    path = cache_path(src, arch)
    if use_cache and not rebuild and path.is_file():
        return path.read_bytes()
    errors = []
    cubin = None
    for compiler in (nvrtc_compile, lambda s, a: nvcc_compile(s, a)[0]):
        try:
            cubin = compiler(src, arch)
            break
        except (CudaError, *COMPILER_MISSING) as e:
            errors.append(f"{type(e).__name__}: {e}" if not isinstance(e, CudaError) else str(e))
    if cubin is None:
        raise CudaError(f"cannot build {src.name} for {arch}:\n" + "\n".join(errors))
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(cubin)
        os.replace(tmp, path)  # atomic: concurrent builders never see half a file
    return cubin


# -- the running device ------------------------------------------------------------------------


_PRIMARY: dict[int, object] = {}  # device ordinal -> its retained primary context


def ensure_context(device: int = 0):
    """A current CUDA context on device ``device``: the current one if it is on that device, else that
    device's primary context (the one the CUDA runtime, hence torch, uses), made current for this
    thread. Returns the CUcontext."""
    from cuda.bindings import driver

    try:
        cuda_call(driver.cuInit(0), "cuInit")
    except RuntimeError as e:  # cuda-bindings 13: libcuda itself not found (no NVIDIA driver)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CudaError(f"cuInit failed: no usable NVIDIA driver here ({first})") from None
    want = cuda_call(driver.cuDeviceGet(device), f"cuDeviceGet({device})")
    ctx = cuda_call(driver.cuCtxGetCurrent(), "cuCtxGetCurrent")
    if int(ctx) != 0 and int(cuda_call(driver.cuCtxGetDevice(), "cuCtxGetDevice")) == int(want):
        return ctx
    if device not in _PRIMARY:  # retained once per device, kept for the process (as the runtime does)
        _PRIMARY[device] = cuda_call(driver.cuDevicePrimaryCtxRetain(want), f"cuDevicePrimaryCtxRetain({device})")
    ctx = _PRIMARY[device]
    cuda_call(driver.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")
    return ctx


def current_device():
    from cuda.bindings import driver

    return cuda_call(driver.cuCtxGetDevice(), "cuCtxGetDevice")


def device_arch(dev=None) -> str:
    """``sm_XY`` of the current context's device (or of ``dev``)."""
    from cuda.bindings import driver

    dev = current_device() if dev is None else dev
    attr = driver.CUdevice_attribute
    major = cuda_call(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "cuDeviceGetAttribute")
    minor = cuda_call(driver.cuDeviceGetAttribute(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "cuDeviceGetAttribute")
    return f"sm_{major}{minor}"


class Module:
    """A CUBIN loaded into the current context: functions by name, ``__constant__`` ints by name."""

    def __init__(self, cubin: bytes, name: str) -> None:
        from cuda.bindings import driver

        self.name = name
        self.handle = cuda_call(driver.cuModuleLoadData(cubin), f"cuModuleLoadData({name})")
        self._functions: dict[str, object] = {}

    def function(self, name: str):
        from cuda.bindings import driver

        if name not in self._functions:
            self._functions[name] = cuda_call(
                driver.cuModuleGetFunction(self.handle, name.encode()), f"cuModuleGetFunction({self.name}:{name})"
            )
        return self._functions[name]

    def constant_ints(self, name: str, count: int) -> list[int]:
        """Read an ``extern "C" __constant__ int name[count]`` (launch geometry the .cu owns)."""
        import ctypes

        from cuda.bindings import driver

        ptr, size = cuda_call(driver.cuModuleGetGlobal(self.handle, name.encode()), f"cuModuleGetGlobal({name})")
        if size != 4 * count:
            raise CudaError(f"{self.name}:{name} is {size} bytes, expected {4 * count}")
        buf = (ctypes.c_int * count)()
        cuda_call(driver.cuMemcpyDtoH(ctypes.addressof(buf), ptr, size), f"cuMemcpyDtoH({name})")
        return list(buf)


_MODULES: dict[tuple[int, KernelSource], Module] = {}


def device_name(dev=None) -> str:
    """The GPU's name (best effort: ``GPU`` when the driver does not say)."""
    from cuda.bindings import driver

    try:
        dev = current_device() if dev is None else dev
        raw = cuda_call(driver.cuDeviceGetName(256, dev), "cuDeviceGetName")
        return bytes(raw).split(b"\0", 1)[0].decode(errors="replace").strip() or "GPU"
    except Exception:  # only for messages
        return "GPU"


def load_module(src: KernelSource, device: int = 0) -> Module:
    """Build (or fetch from cache) ``src`` for device ``device`` and load it once per context.

    Raises :class:`UnsupportedDevice` before compiling for a GPU below :data:`MIN_COMPUTE_CAPABILITY`.
    A cached CUBIN that the driver refuses (written by another toolchain, or damaged) is rebuilt once."""
    ctx = ensure_context(device)
    key = (int(ctx), src)
    if key not in _MODULES:
        arch = device_arch()
        reason = unsupported_reason(arch, f"{device_name()} (cuda:{device})")
        if reason:
            raise UnsupportedDevice(reason)
        cached = cache_path(src, arch).is_file()
        cubin = compile_cubin(src, arch)
        try:
            module = Module(cubin, src.name)
        except CudaError as first:
            if not cached:
                raise
            try:
                module = Module(compile_cubin(src, arch, rebuild=True), src.name)
            except CudaError as again:
                raise CudaError(f"{again} (a cached CUBIN was refused too: {first}; toolchain {toolchain()})") from None
        _MODULES[key] = module
    return _MODULES[key]
