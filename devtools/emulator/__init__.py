"""The kernels' own CUDA C++ run on the CPU: the host compiler builds each .cu with
``cuda_host.h`` (one fiber per CUDA thread, warp-collective instructions per
the PTX ISA) into a shared library; the launchers of ``launchers.py`` drive it
through the same parameter structs, grids and blocks as on a GPU.

Unlike ``host_emulation`` (the launchers with each kernel replaced by its NumPy
model), this executes the device code itself: index maths, strides, tiling,
barriers, the mma.sync / ldmatrix fragment layouts, bounds on partial tiles.
It is slow (one fiber per thread) and meant for small shapes in tests and for
``benchmarks/gpu_check.py --dry-run``. See ``cuda_host.h`` for what it cannot check.

Needs a C++17 host compiler (``$CXX`` or g++/c++) and the CUDA headers
(``cuda_fp16.h``: ``$CUDA_HOME/include`` or pip's nvidia-cuda-runtime);
:func:`unavailable_reason` says what is missing.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from avs_engine.kernels.launchers import RelPosAttention, StbavaKernels
from avs_engine.errors import CudaError
from avs_engine.kernels.nvrtc import CSRC, KernelSource, cache_dir, cuda_include_dir, nvcc_path

HEADER = Path(__file__).parent / "cuda_host.h"
# A kernel entry after preprocessing: extern "C" void NAME(const ParamsType p)
_ENTRY = re.compile(r'extern\s+"C"\s+void\s+(\w+)\s*\(\s*const\s+(\w+)\s+p\s*\)\s*\{')
# Shared memory of the GPU the emulation pretends to be (H100's opt-in limit per block).
SMEM_OPTIN_BYTES = 227 * 1024
_LAUNCH_LOCK = threading.Lock()


def compiler() -> str | None:
    return os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")


def host_include_dir() -> str | None:
    """CUDA headers a host compiler can use: cuda_fp16.h with the toolkit's crt/host_defines.h
    (pip's NVRTC headers lack it; NVRTC has it built in)."""
    nvcc = nvcc_path()
    roots = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    if nvcc:
        roots.append(str(Path(nvcc).resolve().parent.parent))
    candidates = [Path(r) / "include" for r in roots if r] + ([Path(cuda_include_dir())] if cuda_include_dir() else [])
    for inc in candidates:
        if (inc / "cuda_fp16.h").is_file() and (inc / "crt" / "host_defines.h").is_file():
            return str(inc)
    return None


def unavailable_reason() -> str | None:
    """None when the emulator can build here, else why not (one line)."""
    if compiler() is None:
        return "no C++ compiler (set CXX or install g++)"
    if host_include_dir() is None:
        return "CUDA toolkit headers (cuda_fp16.h, crt/host_defines.h) not found: set CUDA_HOME"
    return None


def _flags(src: KernelSource) -> list[str]:
    return ["-std=c++17", "-DAVS_CPU_EMULATION", f"-I{CSRC}", f"-I{host_include_dir()}", "-include", str(HEADER),
            *src.define_flags()]


def _run(cmd: list[str], what: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CudaError(f"{what} failed:\n{proc.stderr.strip()}")
    return proc.stdout


def entries(src: KernelSource) -> list[tuple[str, str]]:
    """(kernel name, parameter struct) of every ``extern "C" __global__`` kernel in ``src``."""
    pre = _run([compiler(), "-E", "-x", "c++", *_flags(src), str(src.path)], f"preprocessing {src.name}")
    found = _ENTRY.findall(pre)
    if not found:
        raise CudaError(f"{src.name}: no kernel entries found")
    return found


def _launcher_source(src: KernelSource, kernels: list[tuple[str, str]]) -> str:
    cases = "\n".join(
        f'    if (!std::strcmp(name, "{k}")) {{\n'
        f"        const {t} p = *static_cast<const {t}*>(params);\n"
        f"        err = avs_emu::launch([&] {{ {k}(p); }}, grid, block, smem);\n"
        f"    }} else"
        for k, t in kernels
    )
    names = ",".join(k for k, _ in kernels)
    return f"""#include "{src.path}"

extern "C" const char* const avs_emu_kernel_names = "{names}";

extern "C" int avs_emu_launch(const char* name, const void* params, unsigned gx, unsigned gy, unsigned gz,
                              unsigned bx, unsigned by, unsigned bz, unsigned smem, char* error, int error_len) {{
    const avs_emu::Dim3 grid{{gx, gy, gz}}, block{{bx, by, bz}};
    std::string err;
{cases}
    {{
        err = std::string("no kernel named ") + name;
    }}
    if (err.empty()) return 0;
    std::snprintf(error, error_len, "%s", err.c_str());
    return 1;
}}
"""


def build(src: KernelSource) -> Path:
    """Compile ``src`` for the CPU (cached by source, header, defines and flags). Returns the .so."""
    reason = unavailable_reason()
    if reason:
        raise CudaError(f"CPU emulation unavailable: {reason}")
    h = hashlib.sha256(f"{src.digest()}|{HEADER.read_bytes().hex()}|{compiler()}".encode())
    path = cache_dir() / "cpu" / f"{src.path.stem}-{h.hexdigest()[:20]}.so"
    if path.is_file():
        return path
    kernels = entries(src)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_so = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tu = Path(tmp) / "emulated.cpp"
            tu.write_text(_launcher_source(src, kernels))
            # -ffp-contract=off: no fused multiply-adds beyond the fmaf the source writes
            _run([compiler(), "-shared", "-fPIC", "-w", "-O2", "-ffp-contract=off", *_flags(src), "-o", tmp_so, str(tu)],
                 f"host compiler on {src.name}")
        os.replace(tmp_so, path)  # atomic: concurrent builders never load half a file
    finally:
        if os.path.exists(tmp_so):
            os.unlink(tmp_so)
    return path


class EmulatedModule:
    """The CPU build of one .cu: the same two questions as ``nvrtc.Module`` plus a launch."""

    def __init__(self, src: KernelSource) -> None:
        self.name = src.name
        self.lib = ctypes.CDLL(str(build(src)))
        self.kernels = set(ctypes.c_char_p.in_dll(self.lib, "avs_emu_kernel_names").value.decode().split(","))
        fn = self.lib.avs_emu_launch
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p] + [ctypes.c_uint] * 7 + [ctypes.c_char_p, ctypes.c_int]
        self._launch = fn

    def function(self, name: str) -> str:
        if name not in self.kernels:
            raise CudaError(f"{self.name}: no kernel {name}")
        return name

    def constant_ints(self, name: str, count: int) -> list[int]:
        return list((ctypes.c_int * count).in_dll(self.lib, name))

    def launch(self, name: str, grid, block, smem: int, params) -> None:
        self.function(name)
        if min(grid) < 1 or grid[0] >= 2**31 or grid[1] > 65535 or grid[2] > 65535:
            raise CudaError(f"{name}: grid {grid} out of range")
        err = ctypes.create_string_buffer(512)
        with _LAUNCH_LOCK:  # the emulator's scheduler state is process-wide; ctypes drops the GIL
            rc = self._launch(name.encode(), ctypes.byref(params), *grid, *block, smem, err, len(err))
        if rc:
            raise CudaError(f"{name} (CPU emulation): {err.value.decode()}")


class EmulatedStbavaKernels(StbavaKernels):
    """StbavaKernels on host memory, the kernels' source run by the CPU emulator."""

    def __init__(self, T: int, H: int, C: int) -> None:
        self.launches: list[str] = []
        super().__init__(T, H, C)

    @classmethod
    def load(cls, src: KernelSource, device: int) -> EmulatedModule:
        return EmulatedModule(src)

    def _launch(self, name: str, grid, block, smem: int, stream: int, params) -> None:
        self.launches.append(name)
        module = self.spatial if name.startswith("spatial") else self.temporal
        module.launch(name, grid, block, smem, params)


class EmulatedRelPosAttention(RelPosAttention):
    """RelPosAttention on host memory, the flash kernel's source run by the CPU emulator."""

    def __init__(self) -> None:  # not super().__init__: it loads a CUBIN and asks the driver
        self.module = EmulatedModule(KernelSource("relpos_flash_attention.cu"))
        self.block_rows, self.block_keys, self.threads, self.max_rel = self.module.constant_ints("relpos_geometry", 4)
        self.smem_optin = SMEM_OPTIN_BYTES
        self.launches: list[str] = []

    def _launch(self, name: str, grid, block, stream: int, params) -> None:
        self.launches.append(name)
        smem = self.module.constant_ints(f"{name}_smem_bytes", 1)[0]
        if smem > self.smem_optin:
            raise CudaError(f"{name} needs {smem} bytes of shared memory; this GPU allows {self.smem_optin}")
        self.module.launch(name, grid, block, smem, params)
