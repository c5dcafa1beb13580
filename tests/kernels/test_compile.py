"""CPU checks of the CUDA sources: nvcc/ptxas for sm_80 and sm_90 without spills, the
committed ptxas report up to date, param structs laid out as ctypes says, NVRTC -> CUBIN."""

import re
import shutil
import subprocess

import pytest

from devtools import ptxas
from avs_engine.kernels.launchers import PARAM_STRUCTS
from avs_engine.kernels.nvrtc import CSRC, SOURCES, KernelSource, nvcc_path

needs_nvcc = pytest.mark.skipif(nvcc_path() is None, reason="nvcc not installed")


@pytest.fixture(scope="module")
def default_records():
    """Every .cu at its default (vit_h) shapes, sm_80 and sm_90, compiled two at a time."""
    return ptxas.compile_all(variants=[KernelSource(s) for s in SOURCES])


@needs_nvcc
def test_every_source_compiles_without_spills(default_records):
    for src in SOURCES:
        for arch in ptxas.ARCHS:
            assert any(r.source == src and r.arch == arch for r in default_records), (src, arch)
    spills = [r for r in default_records if r.spill_stores or r.spill_loads or r.stack]
    assert not spills, spills
    assert all(r.smem <= 48 * 1024 for r in default_records)  # static shared memory limit
    flash = {r.function for r in default_records if r.source == "relpos_flash_attention.cu"}
    assert flash == {f"relpos_flash_attn_{t}_d{d}" for t in ("f16", "bf16") for d in (64, 80)}


@needs_nvcc
@pytest.mark.slow
def test_largest_T_compiles_without_spills():
    records = ptxas.compile_all(variants=[KernelSource("temporal_attention.cu", (("AVS_T", 8),))])
    assert records and not [r for r in records if r.spill_stores or r.spill_loads]


def _kernel_family(function: str) -> str:
    """temporal_visual_bf16 -> temporal_visual; temporal_audio_combine stays."""
    head, _, tail = function.rpartition("_")
    return head if tail in ("f32", "f16", "bf16") else function


@needs_nvcc
def test_static_smem_bound_matches_ptxas(default_records):
    """check_shape's shared-memory arithmetic against ptxas' own report: the default shapes (already
    compiled) and T=5, 12 heads, C=96, which ptxas refuses (its report still gives every size)."""
    from avs_engine.errors import CudaError, ShapeError
    from avs_engine.kernels.launchers import STATIC_SMEM_LIMIT, StbavaKernels, stbava_static_smem

    def check(records, T, H, C):
        want = stbava_static_smem(T, H, C)
        stbava = [r for r in records if r.source != "relpos_flash_attention.cu"]
        assert stbava and all(r.smem == want[_kernel_family(r.function)] for r in stbava), (T, H, C, stbava)

    check(default_records, 5, 8, 256)
    src = KernelSource("temporal_attention.cu", (("AVS_T", 5), ("AVS_H", 12), ("AVS_C", 96)))
    with pytest.raises(CudaError, match="uses too much shared data") as e:
        ptxas.compile_variant(src, "sm_80")
    records = ptxas.parse_ptxas(str(e.value), src)
    assert len(records) == 7  # the three temporal families in three dtypes, plus the combine kernel
    check(records, 5, 12, 96)
    assert max(r.smem for r in records) == stbava_static_smem(5, 12, 96)["temporal_visual"] == 53760 > STATIC_SMEM_LIMIT
    with pytest.raises(ShapeError, match="static shared memory"):
        StbavaKernels.check_shape(5, 12, 96)


def test_committed_report_is_current():
    text = ptxas.REPORT.read_text()
    assert f"sources digest: {ptxas.sources_digest()}" in text, (
        "csrc/ changed: regenerate with `python -m devtools.ptxas`")
    rows = [line.split() for line in text.splitlines() if line.endswith(tuple("0123456789")) and ".cu" in line]
    assert rows and all(int(r[-1]) == 0 and int(r[-2]) == 0 for r in rows)  # no spills recorded


def test_ptxas_parser():
    log = """ptxas info    : Compiling entry function 'k_f16' for 'sm_90'
ptxas info    : Function properties for k_f16
    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 96 registers, used 1 barriers, 39680 bytes smem, 464 bytes cmem[0]
ptxas info    : Compiling entry function 'k2' for 'sm_90'
ptxas info    : Function properties for k2
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 142 registers, used 1 barriers
"""
    a, b = ptxas.parse_ptxas(log, KernelSource("x.cu", (("AVS_T", 8),)))
    assert (a.function, a.registers, a.smem, a.stack, a.spill_stores, a.defines) == ("k_f16", 96, 39680, 8, 4, "AVS_T=8")
    assert (b.function, b.registers, b.smem, b.spill_loads) == ("k2", 142, 0, 0)


@pytest.mark.skipif(shutil.which("g++") is None, reason="no host C++ compiler")
def test_param_structs_match_ctypes(tmp_path):
    """params.h compiled by the host compiler: sizeof and every offsetof equal the ctypes mirror."""
    body = []
    for name, cls in PARAM_STRUCTS.items():
        body.append(f'printf("{name} size %zu\\n", sizeof({name}));')
        for field, _ in cls._fields_:
            body.append(f'printf("{name} {field} %zu\\n", offsetof({name}, {field}));')
    src = tmp_path / "probe.cpp"
    src.write_text('#include <cstdio>\n#include <cstddef>\n#include "params.h"\nint main() {\n'
                   + "\n".join(body) + "\nreturn 0;\n}\n")
    exe = tmp_path / "probe"
    subprocess.run(["g++", "-std=c++17", f"-I{CSRC}", str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    import ctypes

    for line in out.splitlines():
        name, field, value = line.split()
        cls = PARAM_STRUCTS[name]
        want = ctypes.sizeof(cls) if field == "size" else getattr(cls, field).offset
        assert int(value) == want, f"{name}.{field}: C {value}, ctypes {want}"


def test_struct_fields_match_header():
    """Same field names in the same order in params.h and the ctypes structs."""
    header = (CSRC / "params.h").read_text()
    for name, cls in PARAM_STRUCTS.items():
        body = re.search(r"struct %s \{(.*?)\};" % name, header, re.S).group(1)
        body = re.sub(r"//.*", "", body)
        fields = [f for decl in body.split(";") if decl.strip()
                  for f in re.findall(r"(\w+)\s*(?:,|$)", decl.strip().split(None, 1)[-1].replace("*", " "))]
        assert fields == [f for f, _ in cls._fields_], name


def _nvrtc_available():
    try:
        from cuda.bindings import nvrtc  # noqa: F401

        from avs_engine.kernels.nvrtc import nvrtc_version

        return nvrtc_version() is not None
    except ImportError:
        return False


@pytest.mark.skipif(not _nvrtc_available(), reason="cuda-python / NVRTC not installed")
def test_nvrtc_builds_cubin():
    """NVRTC (no GPU needed) builds a CUBIN; the smallest source, one arch, a non-default shape."""
    from avs_engine.kernels.nvrtc import nvrtc_compile

    cubin = nvrtc_compile(KernelSource("spatial_attention.cu", (("AVS_H", 4), ("AVS_C", 64))), "sm_90")
    assert cubin[:4] == b"\x7fELF"


@pytest.mark.slow
@pytest.mark.skipif(not _nvrtc_available(), reason="cuda-python / NVRTC not installed")
@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("arch", ptxas.ARCHS)
def test_nvrtc_builds_every_source(source, arch):
    from avs_engine.kernels.nvrtc import nvrtc_compile

    assert nvrtc_compile(KernelSource(source), arch)[:4] == b"\x7fELF"


def test_launch_path_imports_no_torch():
    """nvrtc, launchers, reference_math and host_emulation serve the tensorrt backend too."""
    import sys

    code = ("import sys, avs_engine.kernels.nvrtc, avs_engine.kernels.launchers, avs_engine.kernels.reference_math, "
            "devtools.host_emulation, devtools.ptxas; "
            "bad = [m for m in ('torch', 'cuda.bindings.driver') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=CSRC.parents[2])
