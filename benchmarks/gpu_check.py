"""GPU validation of avs-engine: the fused kernels, the torch CUDA path end to end, and the
ONNX Runtime and TensorRT CUDA paths, in one command that writes one JSON file.

    python -m benchmarks.gpu_check                 # repo root, CUDA GPU: 4-7 min estimated (never run)
    python benchmarks/gpu_check.py                 # the same
    python -m benchmarks.gpu_check --dry-run       # CPU rehearsal: small shapes, kernels emulated
    python -m benchmarks.gpu_check --dry-run --quick   # the fast rehearsal the test suite runs

(avs_engine importable: ``pip install -e '.[torch,ort]' 'cuda-python[all]'``; onnxruntime-gpu and
TensorRT where those paths should be checked.)

1. build: NVRTC -> CUBIN for the GPU's arch, cold (empty cache) and timed. A GPU below compute
   capability 8.0 gets a "not available" row here and in 2-5 (the kernels need sm_80), and
   step 6 then checks that --fused falls back to PyTorch instead.
2. check: fresh random inputs at vit_h shapes (ST-BAVA: T=5, 4096 pixels, 256 channels, 8 heads;
   global attention: batch T=5, 16 heads x 80, 4096 tokens; plus head dim 64 and a 40x40 grid
   with partial tiles), every output pre-filled with NaN (all must be written), against a
   float64 reference: max |error| at most 2x PyTorch's own at the same precision (flash-attention's
   rule).
3-5. stbava, global_attn, stage: CUDA-event timings (median of --reps after warm-up; warm-up
   reported apart; peak memory) of each ST-BAVA attention update (reference MHA FP32/FP16 eager,
   folded PyTorch, kernels), the global attention (SAM eager FP32/FP16, SDPA with a materialised
   bias, the flash kernel) and the whole fused ST-BAVA stage (depth 7), eager and CUDA-graphed.
6. e2e: a generated video through ``avs-run`` itself (in this process), torch backend on CUDA in
   fp32/bf16/fp16, with and without --fused, for the bundled demo model and for random weights
   whose encoder the flash kernel takes (head dim 64); masks (per-second IoU) and saved logits
   (rel. L2) against ``avs-run --device cpu`` fp32; each runner's description (which says where
   the global attention ran and in which precision). Then each configuration's ``run_clip`` timed,
   as a ratio to torch FP32 eager on the same GPU in this run.
7. paths: ONNX Runtime's CUDA (and TensorRT) execution provider on the demo model's graphs, and
   TensorRT engines built from them (``avs-run --engine-dir``, with and without --cuda-graph), the
   same comparisons and timings; "not available" (with the reason) where the library or provider
   is missing.
8. train (benchmarks/gpu_check_train.py): one avs-train step of vit_b and vit_h at T=5 (peak memory, step
   time, the estimate) per training precision, and vit_h inference bf16 vs FP32 masks (per-frame IoU).

Every section stops starting new work when --time-budget (default 420 s) is spent; what it skipped
is listed. Prints one table and writes a JSON file (--json). TF32 is off for the kernel sections
(FP32 means FP32); the end-to-end runs use each backend's defaults, as avs-run does.
In --dry-run everything runs on the CPU: the "kernel" rows through the real launchers, by default
the kernels' own CUDA source on the CPU emulator (devtools.emulator; one fiber per CUDA thread),
else (--emulate numpy, or no host compiler / CUDA headers) their NumPy models (host_emulation);
the end-to-end rows on ``--device cpu``. Dry-run timings mean nothing; the run checks the script
and the kernels' logic, not the GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python benchmarks/gpu_check.py` puts benchmarks/, not the repo, on the path
    sys.path.insert(0, str(REPO))

try:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from avs_engine.exact import torch_ops
    from avs_engine.kernels import launchers, nvrtc
    from devtools import host_emulation
    from avs_engine.exact.fused_fusion import FusedAVFusionBlock, TorchAttentionOps
    from avs_engine.reference.fusion import AVFusionBlock
    from benchmarks import gpu_report
except ImportError as e:  # one clear line, not a traceback
    sys.exit(f"gpu_check: cannot import ({e}); run from the repo root with `pip install -e '.[torch,ort]' 'cuda-python[all]'`")


@dataclass(frozen=True)
class Shapes:
    T: int
    N: int  # pixels = grid * grid
    C: int
    heads: int
    grid: int
    attn_heads: int
    head_dim: int
    depth: int
    small_grid: int  # general key-grid check (partial tiles)
    video_seconds: int  # end to end: the generated video's length (and the clip length)


REAL = Shapes(T=5, N=4096, C=256, heads=8, grid=64, attn_heads=16, head_dim=80, depth=7, small_grid=40, video_seconds=5)
DRY = Shapes(T=5, N=256, C=256, heads=8, grid=16, attn_heads=2, head_dim=80, depth=2, small_grid=9, video_seconds=3)
QUICK = Shapes(T=2, N=64, C=64, heads=4, grid=8, attn_heads=1, head_dim=64, depth=1, small_grid=5, video_seconds=2)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def tag_of(dt) -> str:
    return {v: k for k, v in DTYPES.items()}[dt]


class Env:
    """Device, timer and memory probes; the same calls on CPU (dry run) and CUDA."""

    def __init__(self, dry_run: bool, reps: int, warmup: int, emulate: str = "numpy", budget_s: float = 420.0,
                 quick: bool = False) -> None:
        self.dry = dry_run
        self.quick = quick
        self.emulate = emulate  # dry run: "source" (the .cu on the CPU emulator) or "numpy" (the kernels' models)
        self.device = torch.device("cpu" if dry_run else "cuda")
        self.reps, self.warmup = reps, warmup
        self.rows: list[dict] = []
        self.failures: list[str] = []
        self.skipped: list[str] = []
        self.t0 = time.perf_counter()
        self.budget_s = budget_s
        self.kernels_off: str | None = None  # why the fused kernels cannot run on this GPU
        self.base: dict[str, float] = {}  # model -> torch FP32 eager run_clip median ms (the ratios' base)
        self.clip_refs: dict[str, np.ndarray] = {}  # model -> CPU float32 logits of the timed clip
        self.references: dict[str, tuple] = {}  # model -> (masks, logits) of avs-run --device cpu fp32
        self.video: Path | None = None

    def left_s(self) -> float:
        return self.budget_s - (time.perf_counter() - self.t0)

    def over_budget(self, section: str, what: str, need_s: float = 0.0) -> bool:
        """True (and a "skipped" row) when less than ``need_s`` of the time budget is left."""
        if self.left_s() >= need_s:
            return False
        self.skipped.append(f"{section}: {what}")
        self.add(section, what, status=f"skipped: time budget ({self.budget_s:.0f} s) spent")
        return True

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def time(self, fn, reps: int | None = None) -> dict:
        """Warm-up calls (the first timed alone), then ``reps`` timed calls; milliseconds."""
        self.sync()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        fn()
        self.sync()
        first = (time.perf_counter() - t0) * 1e3
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if self.cuda else None
        for _ in range(self.warmup - 1):
            fn()
        times = []
        for _ in range(reps or self.reps):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        times.sort()
        return {"median_ms": statistics.median(times), "min_ms": times[0], "max_ms": times[-1],
                "first_call_ms": first, "peak_mib": peak}

    def add(self, section: str, name: str, **fields) -> None:
        row = {"section": section, "name": name, **fields}
        self.rows.append(row)
        if fields.get("ok") is False:
            self.failures.append(f"{section}: {name}")
        status = "" if "ok" not in fields else ("  ok" if fields["ok"] else "  FAIL")
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in fields.items() if k != "ok")
        print(f"  [{section}] {name}: {shown}{status}", flush=True)


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def max_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    return (x.double() - ref.double()).abs().max().item()


def judge(env: Env, section: str, name: str, out: torch.Tensor, ref: torch.Tensor, torch_out: torch.Tensor) -> None:
    """flash-attention's rule: max |kernel - ref| <= 2 max |torch - ref| (+ a float32-rounding floor);
    NaN anywhere = an element never written."""
    written = bool(torch.isfinite(out).all())
    err, terr = max_err(out, ref), max_err(torch_out, ref)
    floor = 2**-22 * ref.double().abs().max().item()
    rel = ((out.double() - ref.double()).norm() / ref.double().norm()).item()
    env.add(section, name, max_err=err, torch_max_err=terr, rel_l2=rel, all_written=written,
            ok=written and err <= 2 * terr + floor)


# -- ST-BAVA ---------------------------------------------------------------------------------------


def random_block(C: int, heads: int, seed: int) -> AVFusionBlock:
    """Random weights with non-trivial LayerNorm affine parameters and attention biases."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    block = AVFusionBlock(C, heads, C).eval()
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
            elif isinstance(m, torch.nn.MultiheadAttention):
                m.in_proj_bias.copy_(0.3 * torch.randn(m.in_proj_bias.shape, generator=g))
                m.out_proj.bias.copy_(0.3 * torch.randn(m.out_proj.bias.shape, generator=g))
    return block


def stbava_inputs(s: Shapes, seed: int, device) -> tuple:
    """(a, v, ape, vpe) in float64: v like the encoder's output, ape = a l2-normalised."""
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(s.T, 1, s.C, generator=g, dtype=torch.float64), dim=-1)
    v = torch.randn(s.T, s.N, s.C, generator=g, dtype=torch.float64)
    vpe = torch.randn(1, s.N, s.C, generator=g, dtype=torch.float64)
    return tuple(x.to(device) for x in (a, v, a.clone(), vpe))


def stbava_factory(env: Env):
    """(T, H, C) -> the ST-BAVA kernels: on the GPU, or in a dry run emulated (source or NumPy models)."""
    if not env.dry:
        return launchers.StbavaKernels
    if env.emulate == "source":
        from devtools import emulator

        return emulator.EmulatedStbavaKernels
    return host_emulation.HostStbavaKernels


def kernels_for(env: Env, s: Shapes):
    return stbava_factory(env)(s.T, s.heads, s.C)


def check_stbava(env: Env, s: Shapes, seed: int) -> None:
    """Each ST-BAVA kernel vs float64 at the real shapes; NaN-filled outputs and workspaces."""
    dev = env.device
    block64 = FusedAVFusionBlock(random_block(s.C, s.heads, seed).double().to(dev))
    a, v, ape, vpe = stbava_inputs(s, seed, dev)
    with torch.no_grad():
        m_a, beta, values = block64.fold_temporal_audio(a, ape)
        ya = (a + ape)[:, 0]
        m_tv, m_sv = block64.fold_temporal_visual(ya), block64.fold_spatial_visual(ya)
        val_v = torch.randn(s.T, s.N, s.C, dtype=torch.float64, device=dev)
    k = kernels_for(env, s)
    H = s.heads
    as_array = torch_ops.as_array
    nan = lambda *shape, dtype=torch.float32: torch.full(shape, float("nan"), dtype=dtype, device=dev)  # noqa: E731
    stream = torch_ops.stream_of(v)
    f32 = lambda x: x.float().contiguous()  # noqa: E731
    for tag, dt in DTYPES.items():
        vl, vpel, vall = v.to(dt), vpe.to(dt), val_v.to(dt)  # the kernel's inputs, rounded
        v64, vpe64, val64 = vl.double(), vpel.double(), vall.double()
        with torch.no_grad():
            # temporal audio: reference float64 on the rounded inputs; PyTorch at precision dt
            ref = TorchAttentionOps.temporal_audio(v64, vpe64, m_a, beta, values, H)
            pt = TorchAttentionOps.temporal_audio(vl, vpel, m_a.to(dt), beta.to(dt), values.to(dt), H)
            m32, b32, val32 = f32(m_a), f32(beta), f32(values)
            pbar, out = nan(s.T, H * s.T), nan(s.T, s.C)
            ws = nan(k.temporal_audio_workspace(s.N))
            k.temporal_audio(as_array(vl), as_array(vpel), as_array(m32), as_array(b32), as_array(val32),
                             as_array(pbar), as_array(out), as_array(ws), stream)
            env.sync()
            judge(env, "check", f"temporal_audio {tag}", out, ref, pt)

            ref = TorchAttentionOps.temporal_visual(v64, vpe64, val64, m_tv, H)
            pt = TorchAttentionOps.temporal_visual(vl, vpel, vall, m_tv.to(dt), H)
            mtv32 = f32(m_tv)
            out = nan(s.T, s.N, s.C, dtype=dt)
            k.temporal_visual(as_array(vl), as_array(vpel), as_array(vall), as_array(mtv32), as_array(out), stream)
            env.sync()
            judge(env, "check", f"temporal_visual {tag}", out, ref, pt)

            ref = TorchAttentionOps.spatial_visual(v64, vpe64, m_sv, H)
            pt = TorchAttentionOps.spatial_visual(vl, vpel, m_sv.to(dt), H)
            msv32 = f32(m_sv)
            out = nan(s.T, H, s.C)
            ws = nan(k.spatial_visual_workspace(s.N))
            k.spatial_visual(as_array(vl), as_array(vpel), as_array(msv32), as_array(out), as_array(ws), stream)
            env.sync()
            judge(env, "check", f"spatial_visual {tag}", out, ref, pt)


# -- global attention ------------------------------------------------------------------------------


def attention_inputs(B: int, heads: int, D: int, grid: int, dt, seed: int, device):
    """qkv [B, L, 3, heads, D] as SAM's projection lays it out; relative tables [2*grid-1, D]."""
    g = torch.Generator().manual_seed(seed)
    L = grid * grid
    qkv = torch.randn(B, L, 3, heads, D, generator=g).to(device=device, dtype=dt)
    rel_pos_h = (0.3 * torch.randn(2 * grid - 1, D, generator=g)).to(device)
    rel_pos_w = (0.3 * torch.randn(2 * grid - 1, D, generator=g)).to(device)
    return qkv, rel_pos_h, rel_pos_w


def sam_eager(q, k, v, rel_h, rel_w, grid: int, scale: float, dt):
    """SAM's Attention maths at precision dt: [B*heads, L, D] -> [B*heads, L, D], batch by batch."""
    outs = []
    for i in range(q.shape[0]):
        qi, ki, vi = q[i : i + 1].to(dt), k[i : i + 1].to(dt), v[i : i + 1].to(dt)
        attn = (qi * scale) @ ki.transpose(-2, -1)
        attn = (attn.view(1, -1, grid, grid, grid, grid) + rel_h[i : i + 1].to(dt).view(1, -1, grid, grid, grid, 1)
                + rel_w[i : i + 1].to(dt).view(1, -1, grid, grid, 1, grid)).view(1, grid * grid, grid * grid)
        outs.append(attn.softmax(dim=-1) @ vi)
    return torch.cat(outs)


def to_bhld(x):  # [B, L, heads, D] -> [B*heads, L, D]
    B, L, H, D = x.shape
    return x.permute(0, 2, 1, 3).reshape(B * H, L, D)


def relpos_kernel(env: Env):
    if not env.dry:
        return launchers.RelPosAttention()
    if env.emulate == "source":
        from devtools import emulator

        return emulator.EmulatedRelPosAttention()
    return host_emulation.HostRelPosAttention()


def check_relpos(env: Env, s: Shapes, seed: int) -> None:
    kernel = relpos_kernel(env)
    cases = [(s.head_dim, s.grid), (64, s.grid), (s.head_dim, s.small_grid)]
    for D, grid in cases:
        for tag in ("fp16", "bf16"):
            dt = DTYPES[tag]
            B, heads = (s.T, s.attn_heads) if grid == s.grid else (2, 2)
            qkv, rph, rpw = attention_inputs(B, heads, D, grid, dt, seed + D + grid, env.device)
            q, k, v = qkv.unbind(2)
            rel_h, rel_w = torch_ops.decomposed_rel_tables(q, rph, rpw, (grid, grid), (grid, grid))
            out = torch.full((B, grid * grid, heads, D), float("nan"), dtype=dt, device=env.device)
            A = torch_ops.as_array
            kernel(A(q), A(k), A(v), A(rel_h), A(rel_w), A(out), (grid, grid), (grid, grid), D**-0.5,
                   torch_ops.stream_of(q))
            env.sync()
            qb, kb, vb = to_bhld(q), to_bhld(k), to_bhld(v)
            ref = sam_eager(qb, kb, vb, rel_h, rel_w, grid, D**-0.5, torch.float64)  # float64 from the same inputs
            pt = sam_eager(qb, kb, vb, rel_h, rel_w, grid, D**-0.5, dt)
            judge(env, "check", f"relpos_flash d{D} {grid}x{grid} B{B}xH{heads} {tag}", to_bhld(out), ref, pt)
            del qkv, q, k, v, out, ref, pt


# -- timings ---------------------------------------------------------------------------------------


def time_stbava_updates(env: Env, s: Shapes, seed: int) -> None:
    """The three attention updates (before the residual) in each form."""
    H, T, N, C = s.heads, s.T, s.N, s.C
    ops_k = torch_ops.CudaAttentionOps(stbava_factory(env) if env.dry else None)
    a64, v64, ape64, vpe64 = stbava_inputs(s, seed, env.device)
    for tag in ("fp32", "fp16"):
        dt = DTYPES[tag]
        ref_block = random_block(C, H, seed).to(env.device, dt)
        fused = FusedAVFusionBlock(ref_block)
        fused_k = torch_ops.CudaFusedAVFusionBlock(ref_block, ops_k)
        a, v, ape, vpe = (x.to(dt) for x in (a64, v64, ape64, vpe64))
        ya = (a + ape)[:, 0]
        avt, avs = ref_block.avt_attention, ref_block.avs_attention
        forms = {
            "temporal_audio": (
                lambda: avt(v + vpe, (a + ape).expand(T, N, C), a.expand(T, N, C))[0].mean(1, keepdim=True),
                lambda: fused.temporal_audio_update(v, vpe, a, ape),
                lambda: fused_k.temporal_audio_update(v, vpe, a, ape),
            ),
            "temporal_visual": (
                lambda: avt((a + ape).expand(T, N, C), v + vpe, v)[0],
                lambda: fused.temporal_visual_update(v, vpe, ya),
                lambda: fused_k.temporal_visual_update(v, vpe, ya),
            ),
            "spatial_visual": (
                lambda: avs(a + ape, v + vpe, v)[0],
                lambda: fused.spatial_visual_update(v, vpe, ya),
                lambda: fused_k.spatial_visual_update(v, vpe, ya),
            ),
        }
        with torch.inference_mode():
            for op, (ref_fn, folded_fn, kernel_fn) in forms.items():
                base = env.time(ref_fn)
                env.add("stbava", f"{op} reference MHA {tag}", **base)
                for name, fn in (("folded torch", folded_fn), ("kernels", kernel_fn)):
                    t = env.time(fn)
                    env.add("stbava", f"{op} {name} {tag}", **t, speedup=base["median_ms"] / t["median_ms"])


def time_relpos(env: Env, s: Shapes, seed: int) -> None:
    B, heads, D, grid = s.T, s.attn_heads, s.head_dim, s.grid
    L = grid * grid
    flops = 4 * B * heads * L * L * D
    kernel = relpos_kernel(env)
    base_ms = None
    for tag in ("fp32", "fp16", "bf16"):
        dt = DTYPES[tag]
        qkv, rph, rpw = attention_inputs(B, heads, D, grid, dt, seed, env.device)
        q, k, v = qkv.unbind(2)
        qb, kb, vb = to_bhld(q), to_bhld(k), to_bhld(v)
        rel_h, rel_w = torch_ops.decomposed_rel_tables(q, rph, rpw, (grid, grid), (grid, grid))
        with torch.inference_mode():
            if tag != "bf16":
                t = env.time(lambda: sam_eager(qb, kb, vb, rel_h, rel_w, grid, D**-0.5, dt))
                env.add("global_attn", f"SAM eager {tag}", **t, tflops=flops / t["median_ms"] / 1e9)
                base_ms = base_ms or t["median_ms"]
            if tag == "fp32":
                continue
            qh, kh, vh = (x.permute(0, 2, 1, 3) for x in (q, k, v))  # [B, heads, L, D] views

            def bias():
                return (rel_h.view(B, heads, grid, grid, grid, 1) + rel_w.view(B, heads, grid, grid, 1, grid)
                        ).view(B, heads, L, L).to(dt)

            mask = bias()
            t = env.time(lambda: F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask, scale=D**-0.5))
            env.add("global_attn", f"SDPA + materialised bias {tag} (attention only)", **t,
                    tflops=flops / t["median_ms"] / 1e9)
            sdpa_ms = t["median_ms"]
            del mask
            t = env.time(lambda: F.scaled_dot_product_attention(qh, kh, vh, attn_mask=bias(), scale=D**-0.5))
            env.add("global_attn", f"SDPA + materialised bias {tag} (with bias build)", **t)
            sdpa_total = t["median_ms"]
            out = torch.empty(B, L, heads, D, dtype=dt, device=env.device)
            A = torch_ops.as_array
            stream = torch_ops.stream_of(q)

            def flash():
                kernel(A(q), A(k), A(v), A(rel_h), A(rel_w), A(out), (grid, grid), (grid, grid), D**-0.5, stream)

            t = env.time(flash)
            env.add("global_attn", f"flash kernel {tag} (kernel only)", **t, tflops=flops / t["median_ms"] / 1e9,
                    vs_sdpa=sdpa_ms / t["median_ms"], vs_sam_fp32=base_ms / t["median_ms"])

            def flash_total():
                rh, rw = torch_ops.decomposed_rel_tables(q, rph, rpw, (grid, grid), (grid, grid))
                o = torch.empty(B, L, heads, D, dtype=dt, device=env.device)
                kernel(A(q), A(k), A(v), A(rh), A(rw), A(o), (grid, grid), (grid, grid), D**-0.5, stream)
                return o

            t = env.time(flash_total)
            env.add("global_attn", f"flash kernel {tag} (with rel tables)", **t, vs_sdpa=sdpa_total / t["median_ms"])
        del qkv, q, k, v, qb, kb, vb, rel_h, rel_w


def time_stage(env: Env, s: Shapes, seed: int) -> None:
    """Whole fused ST-BAVA stage (depth blocks) vs the eager reference blocks."""
    dev = env.device
    a64, v64, ape64, vpe64 = stbava_inputs(s, seed, dev)
    ops_k = torch_ops.CudaAttentionOps(stbava_factory(env) if env.dry else None)

    def stage(layers, a, v, ape, vpe):
        for layer in layers:
            v, a = layer(a, v, ape, vpe)
        return v, a

    ref32 = [random_block(s.C, s.heads, seed + i).to(dev) for i in range(s.depth)]
    with torch.inference_mode():
        v_ref, a_ref = stage(ref32, a64.float(), v64.float(), ape64.float(), vpe64.float())
    variants = [
        ("reference eager fp32", torch.float32, lambda bs: bs),
        ("reference eager fp16", torch.float16, lambda bs: bs),
        ("fused torch fp32", torch.float32, lambda bs: [FusedAVFusionBlock(b) for b in bs]),
        ("fused torch fp16", torch.float16, lambda bs: [FusedAVFusionBlock(b) for b in bs]),
        ("fused kernels fp32", torch.float32, lambda bs: [torch_ops.CudaFusedAVFusionBlock(b, ops_k) for b in bs]),
        ("fused kernels fp16", torch.float16, lambda bs: [torch_ops.CudaFusedAVFusionBlock(b, ops_k) for b in bs]),
    ]
    base = {}
    for name, dt, make in variants:
        layers = make([random_block(s.C, s.heads, seed + i).to(dev, dt) for i in range(s.depth)])
        args = tuple(x.to(dt) for x in (a64, v64, ape64, vpe64))
        with torch.inference_mode():
            v_out, a_out = stage(layers, *args)
            t = env.time(lambda: stage(layers, *args))
        err = max(((v_out.double() - v_ref.double()).norm() / v_ref.double().norm()).item(),
                  ((a_out.double() - a_ref.double()).norm() / a_ref.double().norm()).item())
        if name.startswith("reference"):
            base[tag_of(dt)] = t["median_ms"]
        speed = {f"x_vs_ref_eager_{k}": ms / t["median_ms"] for k, ms in base.items()}
        env.add("stage", f"{name} (depth {s.depth})", **t, rel_l2_vs_fp32_ref=err, **speed)
        if name == "fused kernels fp16" and env.cuda:
            time_stage_graph(env, layers, args, base, s)


def time_stage_graph(env: Env, layers, args, base: dict, s: Shapes) -> None:
    """The fused-kernels stage replayed from a CUDA graph (no Python or launch overhead)."""
    try:
        static = [x.clone() for x in args]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), torch.cuda.stream(side):
            for _ in range(2):
                v, a = static[1], static[0]
                for layer in layers:
                    v, a = layer(a, v, static[2], static[3])
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            v, a = static[1], static[0]
            for layer in layers:
                v, a = layer(a, v, static[2], static[3])
        t = env.time(graph.replay)
        speed = {f"x_vs_ref_eager_{k}": ms / t["median_ms"] for k, ms in base.items()}
        env.add("stage", f"fused kernels fp16, CUDA graph (depth {s.depth})", **t, **speed)
    except Exception as e:  # report and go on: the eager rows stand
        env.add("stage", "fused kernels fp16, CUDA graph", error=f"{type(e).__name__}: {e}", ok=False)



# -- end to end: avs-run on a generated video -------------------------------------------------------------

# Against the CPU float32 run of the same model: (lowest per-second mask IoU, highest logits rel. L2).
# Set before any GPU run: the rows give the measured values, to tighten these from a real run.
# Masks are judged only for trained weights (random weights give logits near 0, where masks flip).
AGREEMENT = {"fp32": (0.98, 1e-2), "fp16": (0.95, 3e-2), "bf16": (0.90, 1e-1)}
TORCH_DTYPE = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass
class E2EModel:
    name: str
    weights: Path | None  # None: the bundled demo model (avs-run's default without --weights)
    trained: bool  # masks meaningful: judged, not only reported


def flash_shaped_bundle(work: Path, quick: bool) -> Path:
    """Random weights in a small config whose encoder's global attention the flash kernel takes
    (head dim 64), so that --fused runs it end to end (the demo model's head dim is 24)."""
    from avs_engine.config import ModelConfig
    from avs_engine.reference import build_model, save_bundle

    size = 128 if quick else 512
    cfg = ModelConfig.from_dict({"base": "tiny", "name": "flash_e2e", "encoder": {
        "img_size": size, "patch_size": 8 if quick else 16, "embed_dim": 128, "num_heads": 2, "depth": 2,
        "window_size": 8, "global_attn_indexes": [1], "adapter_dim": 32}})
    path = work / "flash_e2e.safetensors"
    save_bundle(build_model(cfg, seed=0), path)
    return path


def avs_run(args: list[str]) -> tuple[int, dict | None, list[str]]:
    """``avs-run ARGS --json -q`` in this process (the command's own code path).
    Returns (exit code, its JSON document or None, its stderr lines)."""
    from avs_engine.cli.run import main as avs_run_main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            avs_run_main.main(args=[*args, "--json", "-q"], prog_name="avs-run", standalone_mode=False)
            code = 0
        except SystemExit as e:
            code = int(e.code or 0)
        except Exception as e:  # a crash is a result to report, not a reason to stop the check
            print(f"error: {type(e).__name__}: {e}", file=err)
            code = 1
    text = out.getvalue()
    doc = None
    if text.strip():
        try:
            doc = json.loads(text[text.index("{"):])
        except ValueError:
            doc = None
    return code, doc, [line for line in err.getvalue().splitlines() if line.strip()]


def run_outputs(doc: dict | None) -> tuple[list[np.ndarray], list[np.ndarray], dict]:
    """(masks, logits, model description) of the one video in an avs-run --json document."""
    from PIL import Image

    video = (doc or {}).get("videos", [{}])[0]
    folder = Path(video.get("output_dir", "/nonexistent"))
    masks = [np.asarray(Image.open(f)) > 0 for f in sorted((folder / "masks").glob("*.png"))]
    logits = [np.load(f).astype(np.float32) for f in sorted((folder / "logits").glob("*.npy"))]
    return masks, logits, (doc or {}).get("model", {})


def agreement(masks, logits, ref) -> dict:
    """Per-second mask IoU (min) and logits rel. L2 (max) against the reference run's."""
    ref_masks, ref_logits = ref
    if len(masks) != len(ref_masks) or not masks:
        return {"error": f"{len(masks)} masks, the reference has {len(ref_masks)}"}
    ious = []
    for m, r in zip(masks, ref_masks):
        union = (m | r).sum()
        ious.append(float((m & r).sum() / union) if union else 1.0)
    rels = [float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12)) for a, b in zip(logits, ref_logits)]
    return {"mask_iou_min": min(ious), "logits_rel_l2_max": max(rels) if rels else None}


def e2e(env: Env, s: Shapes, seed: int, work: Path) -> None:
    """The torch backend through avs-run: CUDA (CPU in a dry run) vs avs-run --device cpu fp32."""
    from avs_engine.data.video import write_generated_video

    video = work / "generated.mp4"
    write_generated_video(video, seed=seed % 1000, seconds=s.video_seconds)
    env.video = video
    models = [E2EModel("demo", None, True)]
    if not env.quick:
        models.append(E2EModel("flash_e2e", flash_shaped_bundle(work, env.dry), False))
    device = "cpu" if env.dry else "cuda"
    precisions = ("fp32", "bf16", "fp16")
    extra = []  # the global attention's precision, once avs-run has an option for it
    from avs_engine.cli.run import main as avs_run_main

    if not env.dry and any(p.name == "global_attention_precision" for p in avs_run_main.params):
        extra = [("fp32", True, ["--global-attention-precision", "fp16"])]
    env.references = {}
    for model in models:
        if env.over_budget("e2e", f"{model.name}: all runs", 30):
            continue
        weights = ["--weights", str(model.weights)] if model.weights else []
        common = [str(video), *weights, "--backend", "torch", "-T", str(s.video_seconds), "--no-overlay", "--save-logits",
                  "--project", str(work / "runs"), "--exist-ok"]
        code, doc, err = avs_run([*common, "--device", "cpu", "--precision", "fp32", "--name", f"{model.name}-cpu"])
        masks, logits, _ = run_outputs(doc)
        if code != 0 or not masks:
            env.add("e2e", f"{model.name}: reference avs-run --device cpu fp32", error=(err or ["no output"])[-1], ok=False)
            continue
        ref = (masks, logits)
        env.references[model.name] = ref
        env.add("e2e", f"{model.name}: reference avs-run --device cpu fp32", seconds=len(masks),
                mask_fraction=float(np.mean([m.mean() for m in masks])))
        configs = [(p, fused, []) for p in precisions for fused in (False, True)] + extra
        if env.dry:  # on the CPU, eager fp32 is the reference run itself
            configs = [c for c in configs if c[1]]
        for precision, fused, more in configs:
            name = f"{model.name}: avs-run --device {device} --precision {precision}{' --fused' if fused else ''}{' ' + ' '.join(more) if more else ''}"
            if env.over_budget("e2e", name, 15):
                continue
            args = [*common, "--device", device, "--precision", precision, *(["--fused"] if fused else []), *more,
                    "--name", f"{model.name}-{precision}-{'fused' if fused else 'eager'}{'-ga' if more else ''}"]
            code, doc, err = avs_run(args)
            masks, logits, desc = run_outputs(doc)
            warnings = [line for line in err if line.startswith("warning:")]
            if code != 0 or not masks:
                env.add("e2e", name, error=(err or ["no output"])[-1], ok=False)
                continue
            agree = agreement(masks, logits, ref)
            iou_min, rel_max = AGREEMENT[precision]
            ok = "error" not in agree and (agree["logits_rel_l2_max"] is None or agree["logits_rel_l2_max"] <= rel_max)
            if model.trained and "error" not in agree:
                ok = ok and agree["mask_iou_min"] >= iou_min
            env.add("e2e", name, **agree, runner=desc.get("runner"), warnings=warnings or None, ok=ok)
        time_torch_runners(env, s, seed, model, device, precisions)


def time_runner(env: Env, section: str, name: str, make, base_key: str, ref_logits=None, seed: int = 0, T: int = 2,
                is_base: bool = False, precision: str | None = None):
    """Activate ``make()``, time its run_clip on a random clip (median ms) and report the ratio to
    ``env.base[base_key]``, torch FP32 eager of the same model on the same device (``is_base``: this
    is that run). With ``ref_logits`` and ``precision``, the logits' rel. L2 is judged against
    AGREEMENT. Returns the clip's logits (None on failure)."""
    from avs_engine.checks.compare import random_clip, rel_l2

    if env.over_budget(section, f"{name}: run_clip timing", 10):
        return None
    try:
        runner = make().activate()
    except Exception as e:  # one line, then the next configuration
        env.add(section, f"{name}: run_clip", error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", ok=False)
        return None
    try:
        clip = random_clip(runner.config, T, seed)
        out = {}
        t = env.time(lambda: out.setdefault("logits", runner.run_clip(clip["image"], clip["log_mel"])), reps=min(env.reps, 10))
        logits = out["logits"]
    except Exception as e:
        env.add(section, f"{name}: run_clip", error=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", ok=False)
        return None
    finally:
        runner.deactivate()
    fields = {k: t[k] for k in ("median_ms", "min_ms", "first_call_ms")}
    if ref_logits is not None:
        fields["clip_rel_l2_vs_cpu"] = rel_l2(logits, ref_logits)
        if precision is not None:
            fields["ok"] = fields["clip_rel_l2_vs_cpu"] <= AGREEMENT[precision][1]
    if is_base:
        env.base[base_key] = t["median_ms"]
    base = env.base.get(base_key)
    env.add(section, f"{name}: run_clip T={T}", **fields, x_vs_torch_fp32_eager=base / t["median_ms"] if base else None,
            runner=runner.description)
    return logits


def cpu_clip_logits(model_weights, seed: int, T: int):
    """The torch CPU float32 logits of the random clip the timings run (their reference)."""
    from avs_engine.backends import create_runner
    from avs_engine.checks.compare import random_clip
    from avs_engine.models import DEMO_WEIGHTS

    r = create_runner("torch", weights=model_weights or DEMO_WEIGHTS, device="cpu").activate()
    try:
        clip = random_clip(r.config, T, seed)
        return r.run_clip(clip["image"], clip["log_mel"])
    finally:
        r.deactivate()


def time_torch_runners(env: Env, s: Shapes, seed: int, model: E2EModel, device: str, precisions) -> None:
    from avs_engine.backends import create_runner
    from avs_engine.models import DEMO_WEIGHTS

    weights = model.weights or DEMO_WEIGHTS
    T = s.video_seconds
    # the reference logits of the timed clip: torch CPU fp32 (in a dry run, the first row is that run)
    ref = None if env.dry else cpu_clip_logits(model.weights, seed, T)
    configs = [(p, f, None) for p in precisions for f in (False, True)]
    if not env.dry:  # a float32 model with its global attention on the flash kernel in float16 (runner option)
        configs.append(("fp32", True, "float16"))
    for precision, fused, ga in configs:  # fp32 eager first: the base of the ratios
        name = f"{model.name}: torch {device} {precision}{' fused' if fused else ''}{' global attention ' + ga if ga else ''}"
        logits = time_runner(env, "speed", name, lambda: create_runner(
            "torch", weights=weights, device=device, dtype=TORCH_DTYPE[precision], fused=fused,
            **({"global_attention_dtype": ga} if ga else {})), f"torch-{model.name}", ref, seed, T,
            is_base=(precision, fused, ga) == ("fp32", False, None), precision="fp16" if ga == "float16" else precision)
        if ref is None and logits is not None:
            ref = logits
    env.clip_refs[model.name] = ref


# -- the other backends on the GPU --------------------------------------------------------------------------


def paths(env: Env, s: Shapes, seed: int, work: Path) -> None:
    """ONNX Runtime (CUDA, TensorRT providers) and TensorRT engines on the demo model's graphs."""
    from avs_engine.backends import create_runner
    from avs_engine.models import DEMO_GRAPHS

    video, T = getattr(env, "video", None), s.video_seconds
    ref = getattr(env, "references", {}).get("demo")
    clip_ref = env.clip_refs.get("demo")
    if video is None or ref is None:
        env.add("paths", "ONNX Runtime and TensorRT", status="not run: the e2e section's demo reference is missing")
        return
    device = "cpu" if env.dry else "cuda"

    def compare(name: str, args: list[str], precision: str) -> None:
        if env.over_budget("paths", name, 15):
            return
        code, doc, err = avs_run([str(video), "-T", str(T), "--no-overlay", "--save-logits", "--project", str(work / "runs"),
                                  "--exist-ok", *args])
        masks, logits, desc = run_outputs(doc)
        if code != 0 or not masks:
            env.add("paths", name, error=(err or ["no output"])[-1], ok=False)
            return
        agree = agreement(masks, logits, ref)
        iou_min, rel_max = AGREEMENT[precision]
        ok = "error" not in agree and agree["mask_iou_min"] >= iou_min and (
            agree["logits_rel_l2_max"] is None or agree["logits_rel_l2_max"] <= rel_max)
        env.add("paths", name, **agree, runner=desc.get("runner"), ok=ok)

    # ONNX Runtime
    try:
        import onnxruntime as ort

        offered = ort.get_available_providers()
    except ImportError:
        offered = None
    want = "CPUExecutionProvider" if env.dry else "CUDAExecutionProvider"
    if offered is None or want not in offered:
        why = "onnxruntime is not installed" if offered is None else f"onnxruntime {ort.__version__} offers {', '.join(offered)} (pip install onnxruntime-gpu)"
        env.add("paths", f"ONNX Runtime {want}", status=f"not available: {why}")
    else:
        for precision in ("fp32", "fp16"):
            compare(f"avs-run --device {device} --precision {precision} (bundled demo graphs, ONNX Runtime)",
                    ["--device", device, "--precision", precision], precision)
            time_runner(env, "speed", f"demo: onnxruntime {want} {precision}", lambda: create_runner(
                "onnxruntime", engine_dir=DEMO_GRAPHS, providers=["cpu" if env.dry else "cuda"], precision=precision),
                "torch-demo", clip_ref, seed, T, precision=precision)
        if not env.dry:
            if "TensorrtExecutionProvider" in offered:
                time_runner(env, "speed", "demo: onnxruntime TensorrtExecutionProvider fp16", lambda: create_runner(
                    "onnxruntime", engine_dir=DEMO_GRAPHS, providers=["tensorrt"], precision="fp16"),
                    "torch-demo", clip_ref, seed, T, precision="fp16")
            else:
                env.add("paths", "ONNX Runtime TensorrtExecutionProvider", status="not available: not offered by this onnxruntime")

    # TensorRT engines
    from avs_engine.backends.tensorrt_backend import TensorRTRunner

    reason = TensorRTRunner.unavailable_reason()
    if env.dry or reason:
        env.add("paths", "TensorRT engines", status=reason or "not available: no GPU in a dry run")
        return
    if env.over_budget("paths", "TensorRT engines (build)", 150):
        return
    from avs_engine.artifacts.profiles import TRange
    from avs_engine.export.tensorrt_build import build_engines

    engines = work / "engines"
    t0 = time.perf_counter()
    try:
        build_engines(DEMO_GRAPHS, engines, precision="fp16", t_range=TRange(1, T, max(T, 8)),
                      progress=lambda line: print(f"    {line}", flush=True))
    except Exception as e:
        env.add("paths", "TensorRT fp16 engines: build", error=f"{type(e).__name__}: {str(e).splitlines()[0]}", ok=False)
        return
    env.add("paths", "TensorRT fp16 engines: build (avs-export build, demo graphs)", s=time.perf_counter() - t0, ok=True)
    for graph in (False, True):
        compare(f"avs-run --engine-dir (TensorRT fp16){' --cuda-graph' if graph else ''}",
                ["--engine-dir", str(engines), *(["--cuda-graph"] if graph else [])], "fp16")
        time_runner(env, "speed", f"demo: tensorrt fp16{' cuda-graph' if graph else ''}", lambda: create_runner(
            "tensorrt", engine_dir=engines, cuda_graph=graph), "torch-demo", clip_ref, seed, T, precision="fp16")


# -- build -----------------------------------------------------------------------------------------


def build(env: Env, s: Shapes) -> None:
    """Cold NVRTC build of every module (a fresh cache dir), timed. Dry run: NVRTC for sm_90 only."""
    previous = os.environ.get("AVS_KERNEL_CACHE")
    os.environ["AVS_KERNEL_CACHE"] = tempfile.mkdtemp(prefix="avs_kernels_")  # cold: time the real build
    try:
        _build(env, s)
    finally:
        if previous is None:
            del os.environ["AVS_KERNEL_CACHE"]
        else:
            os.environ["AVS_KERNEL_CACHE"] = previous


def _build(env: Env, s: Shapes) -> None:
    if env.dry:
        for name in (("spatial_attention.cu",) if env.quick else nvrtc.SOURCES):
            t0 = time.perf_counter()
            try:
                nvrtc.compile_cubin(nvrtc.KernelSource(name), "sm_90")
                env.add("build", f"{name} NVRTC sm_90 (CPU)", ms=(time.perf_counter() - t0) * 1e3, ok=True)
            except Exception as e:
                env.add("build", f"{name} NVRTC sm_90 (CPU)", error=str(e).splitlines()[0], ok=False)
        return
    t0 = time.perf_counter()
    launchers.StbavaKernels(s.T, s.heads, s.C)
    env.add("build", f"ST-BAVA kernels T={s.T} H={s.heads} C={s.C} ({nvrtc.device_arch()})",
            ms=(time.perf_counter() - t0) * 1e3, ok=True)
    t0 = time.perf_counter()
    launchers.RelPosAttention()
    env.add("build", "relpos flash attention", ms=(time.perf_counter() - t0) * 1e3, ok=True)


def environment(env: Env) -> dict:
    info = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "python": platform.python_version(),
            "torch": torch.__version__, "dry_run": env.dry, "host": platform.node()}
    try:
        from importlib.metadata import version

        info["cuda_python"] = version("cuda-python")
    except Exception:
        info["cuda_python"] = None
    info["nvrtc"] = nvrtc.nvrtc_version()
    info["nvcc"] = nvrtc.nvcc_version()
    for lib in ("onnxruntime", "tensorrt"):
        try:
            mod = __import__(lib)
            info[lib] = mod.__version__
            if lib == "onnxruntime":
                info["onnxruntime_providers"] = mod.get_available_providers()
        except Exception:  # absent or unloadable: the paths section says why
            info[lib] = None
    if env.cuda:
        p = torch.cuda.get_device_properties(0)
        info.update(device=p.name, capability=f"{p.major}.{p.minor}", memory_gib=round(p.total_memory / 2**30, 1),
                    torch_cuda=torch.version.cuda)
        try:
            import subprocess

            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True).stdout.strip()
        except OSError:
            info["driver"] = None
    else:
        how = "their CUDA source on the CPU emulator" if env.emulate == "source" else "their NumPy models"
        info["device"] = f"CPU (dry run: kernels emulated by {how})"
    return info


def print_table(rows: list[dict]) -> None:
    print("\n" + "=" * 120)
    print(f"{'section':<12}{'name':<58}{'median ms':>11}{'first ms':>10}{'peak MiB':>10}  {'notes'}")
    for r in rows:
        notes = ", ".join(f"{k}={_fmt(v)}" for k, v in r.items()
                          if k not in ("section", "name", "median_ms", "first_call_ms", "peak_mib", "min_ms", "max_ms"))
        med = r.get("median_ms")
        print(f"{r['section']:<12}{r['name'][:57]:<58}{_fmt(med) if med is not None else '':>11}"
              f"{_fmt(r.get('first_call_ms', '')):>10}{_fmt(r.get('peak_mib')) if r.get('peak_mib') is not None else '':>10}"
              f"  {notes}")
    print("=" * 120)


def kernel_section(name: str, fn):
    """A kernel section: on a GPU the kernels cannot run on, one "not available" row instead."""
    def run(env: Env, s: Shapes) -> None:
        if env.kernels_off:
            env.add(name, "fused kernels", status=f"not available: {env.kernels_off}")
            return
        fn(env, s)
    return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true", help="CPU rehearsal at small shapes with emulated kernels")
    p.add_argument("--quick", action="store_true", help="dry run: the smallest shapes, one NVRTC build, 1 rep (the test suite's)")
    p.add_argument("--emulate", choices=["source", "numpy"], default=None,
                   help="dry run: run the .cu source on the CPU emulator (default where a host compiler and CUDA "
                        "headers exist) or the kernels' NumPy models")
    p.add_argument("--reps", type=int, default=None, help="timed repetitions (default 20 on GPU, 2 dry, 1 quick)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=None, help="input seed (default: from the clock, printed)")
    p.add_argument("--skip", nargs="*", default=[], choices=[name for name, _ in STEPS])
    p.add_argument("--time-budget", type=float, default=420.0,
                   help="seconds after which no new work starts (what is left is listed as skipped)")
    p.add_argument("--json", type=Path, default=None,
                   help="results file (default benchmarks/gpu_check.json; dry run: $TMPDIR/gpu_check_dry_run.json)")
    p.add_argument("--markdown", type=Path, default=None, help="Markdown report (default: the JSON file's name, .md)")
    args = p.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible (use --dry-run to rehearse on the CPU)", file=sys.stderr)
        return 2
    if args.quick and not args.dry_run:
        p.error("--quick is a dry-run setting")
    emulate = args.emulate
    if args.dry_run and emulate is None:
        from devtools import emulator

        emulate = "numpy" if args.quick or emulator.unavailable_reason() else "source"
    reps = args.reps or (1 if args.quick else 2 if args.dry_run else 20)
    env = Env(args.dry_run, reps, 1 if args.dry_run else args.warmup, emulate or "numpy", args.time_budget, args.quick)
    s = QUICK if args.quick else DRY if args.dry_run else REAL
    seed = args.seed if args.seed is not None else int(time.time()) % 100000
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    info = environment(env)
    if env.cuda:
        env.kernels_off = torch_ops.kernels_unavailable(torch.device("cuda"))
    print(f"gpu_check: {info['device']}; seed {seed}; shapes {s}; time budget {args.time_budget:.0f} s", flush=True)
    if env.kernels_off:
        print(f"gpu_check: fused kernels not available here: {env.kernels_off}", flush=True)
    # a dry run's numbers are not results: they go to the temp dir unless asked for
    out = args.json or (Path(tempfile.gettempdir()) / "gpu_check_dry_run.json" if args.dry_run
                        else Path(__file__).with_name("gpu_check.json"))
    md = args.markdown or out.with_suffix(".md")

    def save() -> None:  # after every section: a run stopped by a time limit keeps what it measured
        gpu_report.write_results({"environment": info, "seed": seed, "shapes": s.__dict__, "rows": env.rows,
                                  "failures": env.failures, "skipped": env.skipped}, out, md)

    with tempfile.TemporaryDirectory(prefix="avs_gpu_check_") as tmp:
        work = Path(tmp)
        for name, fn in STEPS:
            if name in args.skip:
                continue
            print(f"-- {name} ({env.left_s():.0f} s of the budget left)", flush=True)
            if name in ("e2e", "paths"):  # as avs-run runs: torch's defaults (TF32 in convolutions, not in matmuls)
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = False, True
            if env.over_budget(name, "whole section"):
                continue
            t0 = time.perf_counter()
            try:
                fn(env, s, seed, work)
            except Exception as e:  # one step failing must not hide the others
                import traceback

                traceback.print_exc()
                env.add(name, "step crashed", error=f"{type(e).__name__}: {e}", ok=False)
            info.setdefault("section_s", {})[name] = round(time.perf_counter() - t0, 1)
            info["wall_s"] = round(time.perf_counter() - env.t0, 1)
            save()
    info["wall_s"] = round(time.perf_counter() - env.t0, 1)
    print_table(env.rows)
    save()
    print(f"{len(env.rows)} rows, {len(env.failures)} failures, {len(env.skipped)} skipped, {info['wall_s']} s. "
          f"Results saved to {out} and {md}")
    for f in env.failures:
        print(f"  FAIL {f}")
    return 1 if env.failures else 0


STEPS = [
    ("build", lambda e, sh, seed, work: kernel_section("build", build)(e, sh)),
    ("check", lambda e, sh, seed, work: kernel_section("check", lambda e, sh: (check_stbava(e, sh, seed), check_relpos(e, sh, seed)))(e, sh)),
    ("headline", lambda e, sh, seed, work: importlib.import_module("benchmarks.gpu_headline").headline_section(e, sh, seed, work)),
    ("stbava", lambda e, sh, seed, work: kernel_section("stbava", lambda e, sh: time_stbava_updates(e, sh, seed))(e, sh)),
    ("global_attn", lambda e, sh, seed, work: kernel_section("global_attn", lambda e, sh: time_relpos(e, sh, seed))(e, sh)),
    ("stage", lambda e, sh, seed, work: kernel_section("stage", lambda e, sh: time_stage(e, sh, seed))(e, sh)),
    ("e2e", lambda e, sh, seed, work: e2e(e, sh, seed, work)),
    ("paths", lambda e, sh, seed, work: paths(e, sh, seed, work)),
    ("train", lambda e, sh, seed, work: importlib.import_module("benchmarks.gpu_check_train").train_section(e, sh, seed)),
]


if __name__ == "__main__":
    raise SystemExit(main())
