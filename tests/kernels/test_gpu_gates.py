"""What the kernels' host code decides without a GPU: GPUs below compute capability 8.0 and shapes
the kernels cannot take fall back to PyTorch with one warning (never an error in a forward pass);
a missing NVRTC library falls through to nvcc; the CUBIN cache key holds the compilers' versions
and a refused cached CUBIN is rebuilt; the requested device's context is made current; the flash
kernel's variants are made ready at construction, so a launch is only a launch.

The CUDA driver is the stand-in of ``fake_cuda_driver``; the kernels' maths runs on the NumPy
models of ``devtools.host_emulation``."""

import pytest
import torch

from avs_engine.errors import CudaError, ShapeError
from avs_engine.exact import torch_ops
from avs_engine.exact.torch_ops import CudaAttentionOps, CudaFusedAVFusionBlock, CudaRelPosAttention, use_cuda_kernels
from avs_engine.kernels import nvrtc
from avs_engine.kernels.launchers import DeviceArray, RelPosAttention, StbavaKernels, stbava_static_smem
from devtools.host_emulation import HostRelPosAttention, HostStbavaKernels
from devtools.ptxas import flash_dynamic_smem

from . import fake_cuda_driver
from .test_fused_fusion import inputs, make_block, randomise, rel_l2
from .test_torch_glue import sam_attention

FLASH_CONSTANTS = {"relpos_geometry": [64, 64, 128, 64],
                   **{f"relpos_flash_attn_{t}_d{D}_smem_bytes": [flash_dynamic_smem(D)] for t in ("f16", "bf16") for D in (64, 80)}}


@pytest.fixture
def kernel_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AVS_KERNEL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def fake_compilers(monkeypatch, nvrtc_result=b"\x7fELF nvrtc", nvcc_result=b"\x7fELF nvcc"):
    """NVRTC and nvcc stand-ins: return bytes, or raise what they are given."""
    built = []

    def compiler(name, result):
        def run(src, arch, **kw):
            built.append((name, src.name, arch))
            if isinstance(result, BaseException):
                raise result
            return result if name == "nvrtc" else (result, "")
        return run

    monkeypatch.setattr(nvrtc, "nvrtc_compile", compiler("nvrtc", nvrtc_result))
    monkeypatch.setattr(nvrtc, "nvcc_compile", compiler("nvcc", nvcc_result))
    return built


# -- 1. compute capability ------------------------------------------------------------------------------


def test_capability_gate_decides_from_the_device_query(monkeypatch):
    reason = torch_ops.kernels_unavailable("cuda:0", capability=(7, 5), name="Tesla T4")
    assert reason == ("the fused CUDA kernels need compute capability 8.0 or newer (cp.async and bf16 tensor-core mma); "
                      "Tesla T4 (cuda:0) is 7.5")
    assert torch_ops.kernels_unavailable("cuda:0", capability=(7, 0), name="V100") is not None
    assert torch_ops.kernels_unavailable("cuda:0", capability=(8, 0)) is None
    assert torch_ops.kernels_unavailable("cuda:0", capability=(9, 0)) is None
    # without an explicit capability, torch is asked about that very device
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda dev: asked.append(dev) or (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda dev: "Tesla T4")
    assert "Tesla T4 (cuda:1) is 7.5" in torch_ops.kernels_unavailable(torch.device("cuda:1"))
    assert asked == [torch.device("cuda:1")]


def test_old_gpu_gets_no_kernels_and_one_warning():
    from avs_engine.reference import build_model

    model = build_model("tiny", seed=0)
    randomise(model.layers, torch.Generator().manual_seed(1))
    T, C, G = 3, model.config.fusion.dim, model.config.grid
    g = torch.Generator().manual_seed(2)
    enc, a128 = torch.randn(T, C, G, G, generator=g), torch.randn(T, model.config.audio.embed_dim, generator=g)
    with torch.inference_mode():
        ref = model.fuse(enc, a128)
        warnings = []
        swapped = use_cuda_kernels(model, stbava_kernels=HostStbavaKernels, relpos_kernel=HostRelPosAttention(),
                                   capability=(7, 5), warn=warnings.append)
        out = model.fuse(enc, a128)
    assert swapped == {"fusion_blocks": 0, "global_attention": 0}
    assert not any(isinstance(layer, CudaFusedAVFusionBlock) for layer in model.layers)
    assert len(warnings) == 1 and "compute capability 8.0" in warnings[0] and "PyTorch forms run instead" in warnings[0]
    assert all(torch.equal(a, b) for a, b in zip(out, ref))


def test_launcher_refuses_old_gpu_before_compiling(monkeypatch, kernel_cache):
    fake_cuda_driver.install(monkeypatch, fake_cuda_driver.make_fake_driver({0: (7, 5)}))
    built = fake_compilers(monkeypatch)
    with pytest.raises(nvrtc.UnsupportedDevice, match=r"compute capability 8.0 or newer.*Fake GPU sm_75 \(cuda:0\) is 7.5"):
        RelPosAttention(device=0)
    with pytest.raises(CudaError, match="8.0 or newer"):
        StbavaKernels(5, 8, 256, device=0)
    assert built == []  # nothing compiled, nothing loaded


def test_flash_kernel_that_cannot_be_built_leaves_sams_attention(monkeypatch, kernel_cache):
    """No kernel injected, no usable GPU: the module runs SAM's attention, warning once, not failing."""
    fake_cuda_driver.install(monkeypatch, fake_cuda_driver.make_fake_driver({0: (7, 5)}))
    attn = sam_attention(64)
    warnings = []
    fast = CudaRelPosAttention(attn, torch.float16, None, warn=warnings.append)
    x = torch.randn(2, 16, 16, 128)
    with torch.inference_mode():
        ref, out, again = attn(x), fast(x), fast(x)
    assert torch.equal(out, ref) and torch.equal(again, ref)
    assert len(warnings) == 1 and "flash attention kernel cannot be built" in warnings[0] and "7.5" in warnings[0]
    assert list(fast.state_dict()) == list(attn.state_dict())  # the kept SAM module is no submodule


def test_flash_kernel_input_it_cannot_take_runs_sams_attention():
    attn = sam_attention(64, grid=16)
    kernel = HostRelPosAttention()
    kernel.max_rel = 8  # a kernel whose tables take key grids up to 8x8 (the real one: 64x64)
    warnings = []
    fast = CudaRelPosAttention(attn, torch.float16, kernel, warn=warnings.append)
    x = torch.randn(1, 9, 9, 128)
    with torch.inference_mode():
        ref, out = attn(x), fast(x)
    assert torch.equal(out, ref) and kernel.launches == []
    assert warnings and "key grids up to 8x8, not 9x9" in warnings[0]


# -- 2. shapes the kernels cannot build ------------------------------------------------------------------


def test_shared_memory_bound_in_check_shape():
    StbavaKernels.check_shape(5, 8, 256)  # vit_h
    StbavaKernels.check_shape(8, 8, 256)  # largest T: 46,080 bytes in temporal_visual
    with pytest.raises(ShapeError, match="temporal_visual would need 53760 bytes of static shared memory"):
        StbavaKernels.check_shape(5, 12, 96)
    assert stbava_static_smem(5, 12, 96)["temporal_visual"] == 53760


def test_shape_the_kernels_cannot_build_runs_in_pytorch():
    block = make_block(96, 12, torch.float32, 0)
    warnings = []
    ops = CudaAttentionOps(HostStbavaKernels, warn=warnings.append)
    args = inputs(5, 40, 96, torch.float32, 0)
    with torch.inference_mode():
        (v_ref, a_ref), (v, a) = block(*args), CudaFusedAVFusionBlock(block, ops)(*args)
    assert rel_l2(v, v_ref) < 1e-5 and rel_l2(a, a_ref) < 1e-5
    assert list(ops._cache.values()) == [None]
    assert len(warnings) == 1 and "53760 bytes" in warnings[0] and "runs in PyTorch" in warnings[0]


def test_build_failure_runs_in_pytorch():
    def broken(T, H, C):
        raise CudaError("cannot build temporal_attention.cu for sm_90:\nNVRTC: out of memory")

    block = make_block(64, 8, torch.float32, 0)
    warnings = []
    ops = CudaAttentionOps(broken, warn=warnings.append)
    args = inputs(5, 40, 64, torch.float32, 0)
    with torch.inference_mode():
        (v_ref, _), (v, _) = block(*args), CudaFusedAVFusionBlock(block, ops)(*args)
        CudaFusedAVFusionBlock(block, ops)(*args)  # the failure is remembered: one warning
    assert rel_l2(v, v_ref) < 1e-5
    assert warnings == ["the fused ST-BAVA kernels cannot be built for T=5 H=8 C=64 (cannot build temporal_attention.cu "
                        "for sm_90:); the ST-BAVA attention runs in PyTorch instead"]


# -- 4. a missing NVRTC library ---------------------------------------------------------------------------


def test_missing_nvrtc_library_falls_back_to_nvcc(monkeypatch, kernel_cache):
    """cuda-pathfinder raises DynamicLibNotFoundError (a RuntimeError) from the first NVRTC call."""
    import types

    import cuda.bindings
    from cuda.pathfinder import DynamicLibNotFoundError

    def missing(*args):
        raise DynamicLibNotFoundError('Failure finding "libnvrtc.so"')

    fake = types.SimpleNamespace(nvrtcGetSupportedArchs=missing, nvrtcVersion=missing)
    monkeypatch.setattr(cuda.bindings, "nvrtc", fake, raising=False)
    monkeypatch.setitem(__import__("sys").modules, "cuda.bindings.nvrtc", fake)
    nvcc_built = []
    monkeypatch.setattr(nvrtc, "nvcc_compile", lambda src, arch, **kw: nvcc_built.append(arch) or (b"\x7fELF nvcc", ""))
    src = nvrtc.KernelSource("spatial_attention.cu")
    assert nvrtc.compile_cubin(src, "sm_90") == b"\x7fELF nvcc" and nvcc_built == ["sm_90"]
    assert nvrtc.nvrtc_version() is None and "nvrtc-none" in nvrtc.toolchain()

    def no_nvcc(src, arch, **kw):
        raise CudaError("nvcc not found (set CUDA_HOME or put nvcc on PATH)")

    monkeypatch.setattr(nvrtc, "nvcc_compile", no_nvcc)
    with pytest.raises(CudaError, match=r"(?s)cannot build spatial_attention.cu for sm_80:.*DynamicLibNotFoundError.*nvcc not found"):
        nvrtc.compile_cubin(src, "sm_80")


# -- 8. cache key and stale CUBINs -------------------------------------------------------------------------


def test_cache_key_holds_the_compiler_versions(monkeypatch, kernel_cache):
    src = nvrtc.KernelSource("temporal_attention.cu", (("AVS_T", 3),))
    monkeypatch.setattr(nvrtc, "nvrtc_version", lambda: "12.8")
    old = nvrtc.cache_path(src, "sm_90")
    monkeypatch.setattr(nvrtc, "nvrtc_version", lambda: "13.0")
    new = nvrtc.cache_path(src, "sm_90")
    monkeypatch.setattr(nvrtc, "nvcc_version", lambda: "13.1.40")
    newer = nvrtc.cache_path(src, "sm_90")
    assert len({old, new, newer}) == 3 and all(p.parent == kernel_cache for p in (old, new, newer))
    assert new.name.startswith("temporal_attention-sm_90-")
    built = fake_compilers(monkeypatch)
    assert nvrtc.compile_cubin(src, "sm_90") == b"\x7fELF nvrtc" and newer.read_bytes() == b"\x7fELF nvrtc"
    assert nvrtc.compile_cubin(src, "sm_90") == b"\x7fELF nvrtc" and len(built) == 1  # second time: the cache


def test_refused_cached_cubin_is_rebuilt_once(monkeypatch, kernel_cache):
    driver = fake_cuda_driver.install(monkeypatch, fake_cuda_driver.make_fake_driver(refuse=(b"stale",)))
    src = nvrtc.KernelSource("spatial_attention.cu")
    path = nvrtc.cache_path(src, "sm_90")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"stale")
    built = fake_compilers(monkeypatch, nvrtc_result=b"fresh")
    module = nvrtc.load_module(src, 0)
    assert module.handle and driver.loaded == [b"fresh"] and path.read_bytes() == b"fresh"
    assert built == [("nvrtc", "spatial_attention.cu", "sm_90")]
    # a fresh build the driver refuses too: one error naming both refusals
    fake_cuda_driver.install(monkeypatch, fake_cuda_driver.make_fake_driver(refuse=(b"stale", b"fresh")))
    path.write_bytes(b"stale")
    with pytest.raises(CudaError, match="cuModuleLoadData.*CUDA_ERROR_INVALID_IMAGE.*a cached CUBIN was refused too"):
        nvrtc.load_module(src, 0)


# -- 7. the requested device ------------------------------------------------------------------------------


def test_ensure_context_makes_the_requested_device_current(monkeypatch):
    driver = fake_cuda_driver.install(monkeypatch, fake_cuda_driver.make_fake_driver({0: (9, 0), 1: (8, 0)}, current_device=0))
    assert nvrtc.ensure_context(0) == 1000 and driver.current == 1000  # already there: kept
    assert not [c for c, _ in driver.calls if c in ("cuDevicePrimaryCtxRetain", "cuCtxSetCurrent")]
    assert nvrtc.ensure_context(1) == 1001 and driver.current == 1001  # another device's context was current
    assert nvrtc.device_arch() == "sm_80"
    nvrtc.ensure_context(0)
    nvrtc.ensure_context(1)
    retained = [args[0] for c, args in driver.calls if c == "cuDevicePrimaryCtxRetain"]
    assert retained == [1, 0]  # once per device


def test_ensure_context_without_a_driver_is_one_line(monkeypatch):
    from cuda.pathfinder import DynamicLibNotFoundError

    driver = fake_cuda_driver.make_fake_driver()

    def no_libcuda(flags):
        raise DynamicLibNotFoundError('"cuda" is an NVIDIA driver library and can only be found via system search.')

    driver.cuInit = no_libcuda
    fake_cuda_driver.install(monkeypatch, driver)
    with pytest.raises(CudaError, match="cuInit failed: no usable NVIDIA driver here") as e:
        nvrtc.ensure_context(0)
    assert "\n" not in str(e.value)


# -- 6. nothing but the launch at launch time -------------------------------------------------------------


def flash_arrays(dtype="float16", D=64, grid=8, B=1, heads=2):
    L = grid * grid
    qkv = DeviceArray(0x10000, (B, L, heads, D), (L * heads * D, heads * D, D, 1), dtype, "q")
    rel = DeviceArray(0x20000, (B * heads, L, grid), (L * grid, grid, 1), "float32", "rel")
    return qkv, rel


def test_flash_variants_ready_at_construction(monkeypatch, kernel_cache):
    driver = fake_cuda_driver.install(monkeypatch, fake_cuda_driver.make_fake_driver(constants=FLASH_CONSTANTS))
    fake_compilers(monkeypatch)
    kernel = RelPosAttention(device=0)
    made = [c for c, _ in driver.calls]
    assert made.count("cuFuncSetAttribute") == 4 and made.count("cuMemcpyDtoH") == 5  # geometry + 4 sizes
    driver.calls.clear()
    for dtype, D in (("float16", 64), ("bfloat16", 80), ("float16", 64)):
        qkv, rel = flash_arrays(dtype, D)
        kernel(qkv, qkv, qkv, rel, rel, qkv, (8, 8), (8, 8), D**-0.5, stream=7)
    assert [c for c, _ in driver.calls] == ["cuLaunchKernel"] * 3  # no copy, no attribute: safe to capture
    assert driver.launches[1][0] == "fn:relpos_flash_attn_bf16_d80" and driver.launches[1][3] == flash_dynamic_smem(80)


def test_flash_variant_over_the_shared_memory_optin(monkeypatch, kernel_cache):
    small = flash_dynamic_smem(64)  # a GPU whose opt-in fits d64 but not d80
    driver = fake_cuda_driver.install(monkeypatch, fake_cuda_driver.make_fake_driver(optin=small, constants=FLASH_CONSTANTS))
    fake_compilers(monkeypatch)
    kernel = RelPosAttention(device=0)
    assert kernel.unsupported_reason("float16", 64) is None
    assert f"needs {flash_dynamic_smem(80)} bytes of shared memory; this GPU allows {small}" in kernel.unsupported_reason("float16", 80)
    qkv, rel = flash_arrays("float16", 80)
    with pytest.raises(CudaError, match="this GPU allows"):
        kernel(qkv, qkv, qkv, rel, rel, qkv, (8, 8), (8, 8), 0.1, stream=0)
    assert not driver.launches
