"""gpu_check's headline section (``benchmarks/gpu_check.py``, step ``headline``): the numbers a user asks first.

1. **Routes**: vit_h (random weights), one clip of T = 5, through the torch backend's ``run_clip`` on
   the GPU, per route: fp32 (IEEE), fp32 + TF32, bf16 (matrix weights held in bf16), bf16 + --fused,
   bf16 + --compile. For each: activation time, first clip (compilation included), whole-clip
   latency (median of the timed clips, CUDA events around ``run_clip``: inputs in, logits out),
   per-stage times (the runner's own CUDA-event clock, medians), peak GPU memory
   (``torch.cuda.max_memory_allocated`` from before activation: weights included), and the logits'
   relative L2 against the fp32 route.
2. **Other backends**: ONNX Runtime's CUDA provider (fp16 graphs) and TensorRT fp16 engines of the
   same weights, where installed: the graphs exported here (``avs-export onnx``'s code), then the same
   clip timed; otherwise one row each saying why not.
3. **Fused vs eager**: the ST-BAVA fusion stage of bf16 + --fused against bf16 (both compute the
   fusion in float32), and the encoder's global attention at vit_h's shape (5 frames, 16 heads x 80,
   64x64 grid, bf16) in each form: SAM's eager code, SDPA with the bias folded into q/k (the
   default), SDPA with a materialised bias mask, and the fused flash kernel.

Targets (H100, vit_h, T = 5): whole clip <= 90 ms with bf16 + --fused; fused fusion >= 5x eager;
peak GPU memory <= 8 GB. The rows carry ``target`` and ``meets_target``; a missed target is a
finding, not a failure of the check.

In a dry run the same code runs on the CPU at a small ViT shape (head dim 64, one global block) with
the kernels emulated (``devtools.host_emulation``); --quick leaves out --compile (inductor needs
minutes on a CPU). Dry-run numbers only show that the code runs.
"""

from __future__ import annotations

import copy
import statistics
import time

import numpy as np
import torch

T_CLIP = 5
TARGETS = {"whole_clip_ms": 90.0, "fusion_speedup": 5.0, "peak_gib": 8.0}
# name, TorchRunner options
ROUTES = [
    ("fp32", {"dtype": "float32"}),
    ("fp32 + TF32", {"dtype": "float32", "tf32": True}),
    ("bf16", {"dtype": "bfloat16"}),
    ("bf16 + --fused", {"dtype": "bfloat16", "fused": True}),
    ("bf16 + --compile", {"dtype": "bfloat16", "compile": True}),
]


def dry_config(quick: bool):
    """A ViT-shaped model small enough for the CPU: the flash kernel takes its global attention."""
    from avs_engine.config import ModelConfig

    return ModelConfig.from_dict({"base": "tiny", "name": "vit_shaped_dry", "encoder": {
        "img_size": 128, "patch_size": 8 if quick else 4, "embed_dim": 128, "num_heads": 2, "depth": 2,
        "window_size": 8, "global_attn_indexes": [1], "adapter_dim": 32}})


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


def _randomise_rel_pos(model, seed: int) -> None:
    """SAM initialises the rel-pos tables to zero; trained ones are not, and the kernels add them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for blk in model.image_encoder.blocks:
            for p in (blk.attn.rel_pos_h, blk.attn.rel_pos_w):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def headline_section(env, s, seed: int, work) -> None:
    from avs_engine.reference.build import build_model

    name = "tiny ViT-shaped (dry run)" if env.dry else "vit_h"
    config = dry_config(env.quick) if env.dry else "vit_h"
    if env.over_budget("headline", f"{name}: build", 60):
        return
    t0 = time.perf_counter()
    base = build_model(config, seed=seed % 1000).eval()  # on the CPU; each route copies it
    _randomise_rel_pos(base, seed)
    env.add("headline", f"{name}: random weights built on the CPU", s=time.perf_counter() - t0,
            params_m=sum(p.numel() for p in base.parameters()) / 1e6)
    rng = np.random.default_rng(seed)
    S = base.config.encoder.img_size
    image = rng.standard_normal((T_CLIP, 3, S, S), dtype=np.float32)
    log_mel = (rng.standard_normal((T_CLIP, 1, 96, 64), dtype=np.float32) * 2 - 1).astype(np.float32)
    results: dict[str, dict] = {}
    for route, options in ROUTES:
        if env.dry and options.get("tf32"):
            env.add("headline", f"{name} {route}", status="not run: TF32 is a CUDA tensor-core mode")
            continue
        if env.dry and env.quick and options.get("compile"):
            env.add("headline", f"{name} {route}", status="not run: --quick (inductor compiles for minutes on a CPU)")
            continue
        if env.over_budget("headline", f"{name} {route}", 90 if options.get("compile") else 30):
            continue
        results[route] = run_route(env, name, route, options, base, image, log_mel, results.get("fp32"))
    fusion_ratio(env, name, results)
    other_backends(env, name, base, image, log_mel, results.get("fp32", {}).get("logits"), work)
    del base
    global_attention_forms(env, s, seed)


def run_route(env, name: str, route: str, options: dict, base, image, log_mel, ref) -> dict:
    """Activate one route on a copy of ``base``, time its clips, report one row; returns what later
    rows compare with (logits, stage medians)."""
    from avs_engine.backends.torch_backend import TorchRunner
    from avs_engine.checks.compare import rel_l2

    kw = dict(options)
    if kw.get("fused") and env.dry:
        from devtools.host_emulation import HostRelPosAttention, HostStbavaKernels

        kw["kernels"] = (HostStbavaKernels, HostRelPosAttention())
    if env.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    runner = None
    try:
        t0 = time.perf_counter()
        runner = TorchRunner(model=copy.deepcopy(base), device=str(env.device), **kw).activate()
        env.sync()
        activate_s = time.perf_counter() - t0
        clock = runner.stage_clock()
        t0 = time.perf_counter()
        logits = runner.run_clip(image, log_mel, clock)
        env.sync()
        first_ms = (time.perf_counter() - t0) * 1e3
        stages: dict[str, list[float]] = {}

        def clip():
            c = runner.stage_clock()
            runner.run_clip(image, log_mel, c)
            for k, v in c.seconds().items():
                stages.setdefault(k, []).append(v * 1e3)

        t = env.time(clip, reps=min(env.reps, 10))
    except Exception as e:  # one line, then the next route
        env.add("headline", f"{name} {route}", error=_error(e), ok=False)
        return {}
    finally:
        peak_gib = torch.cuda.max_memory_allocated() / 2**30 if env.cuda else None
        description = runner.description if runner is not None and runner.is_active else None
        if runner is not None and runner.is_active:
            runner.deactivate()
        del runner
    stage_ms = {k: statistics.median(v) for k, v in stages.items()}
    fields = {"median_ms": t["median_ms"], "min_ms": t["min_ms"], "first_call_ms": first_ms, "activate_s": activate_s,
              **{f"{k}_ms": v for k, v in stage_ms.items()}, "peak_gib": peak_gib, "runner": description}
    if ref and "logits" in ref:
        fields["logits_rel_l2_vs_fp32"] = rel_l2(logits, ref["logits"])
    if route == "bf16 + --fused" and not env.dry:
        fields["target"] = f"whole clip <= {TARGETS['whole_clip_ms']:.0f} ms, peak <= {TARGETS['peak_gib']:.0f} GB"
        fields["meets_target"] = t["median_ms"] <= TARGETS["whole_clip_ms"] and (peak_gib or 0) <= TARGETS["peak_gib"]
    env.add("headline", f"{name} {route}: clip T={T_CLIP}", **fields)
    return {"logits": logits, "stage_ms": stage_ms}


def _other_backend_reasons(env) -> dict[str, str | None]:
    """backend -> why it cannot run here (None: it can)."""
    from avs_engine.backends.tensorrt_backend import TensorRTRunner

    try:
        import onnxruntime as ort

        offered = ort.get_available_providers()
        ort_why = None if "CUDAExecutionProvider" in offered else \
            f"onnxruntime {ort.__version__} offers {', '.join(offered)} (pip install onnxruntime-gpu)"
    except ImportError:
        ort_why = "onnxruntime is not installed"
    reasons = {"onnxruntime CUDAExecutionProvider fp16": ort_why, "tensorrt fp16 engines": TensorRTRunner.unavailable_reason()}
    if env.dry:
        reasons = dict.fromkeys(reasons, "dry run (the paths section runs the demo graphs on the CPU)")
    return reasons


def other_backends(env, name: str, base, image, log_mel, ref_logits, work) -> None:
    from avs_engine.backends import create_runner
    from avs_engine.checks.compare import rel_l2

    reasons = _other_backend_reasons(env)
    for backend, why in reasons.items():
        if why:
            env.add("headline", f"{name} {backend}", status=f"not available: {why}")
    if all(reasons.values()) or env.over_budget("headline", f"{name}: ONNX export for the other backends", 240):
        return
    from avs_engine.export.onnx_export import export_onnx

    graphs = work / f"{name}_onnx"
    t0 = time.perf_counter()
    try:
        export_onnx(copy.deepcopy(base), graphs, precision="fp16")
    except Exception as e:
        env.add("headline", f"{name}: avs-export onnx --precision fp16", error=_error(e), ok=False)
        return
    env.add("headline", f"{name}: avs-export onnx --precision fp16", s=time.perf_counter() - t0)
    makers = {"onnxruntime CUDAExecutionProvider fp16": lambda: create_runner(
        "onnxruntime", engine_dir=graphs, providers=["cuda"], precision="fp16")}
    if not reasons["tensorrt fp16 engines"]:
        def trt():
            from avs_engine.artifacts.profiles import TRange
            from avs_engine.export.tensorrt_build import build_engines

            engines = work / f"{name}_engines"
            build_engines(graphs, engines, precision="fp16", t_range=TRange(1, T_CLIP, 8))
            return create_runner("tensorrt", engine_dir=engines)
        makers["tensorrt fp16 engines"] = trt
    for backend, make in makers.items():
        if reasons[backend] or env.over_budget("headline", f"{name} {backend}", 120):
            continue
        runner = None
        try:
            if env.cuda:
                torch.cuda.reset_peak_memory_stats()
            runner = make().activate()
            logits = runner.run_clip(image, log_mel)
            t = env.time(lambda: runner.run_clip(image, log_mel), reps=min(env.reps, 10))
            fields = {"median_ms": t["median_ms"], "min_ms": t["min_ms"], "first_call_ms": t["first_call_ms"]}
            if ref_logits is not None:
                fields["logits_rel_l2_vs_fp32"] = rel_l2(logits, ref_logits)
            env.add("headline", f"{name} {backend}: clip T={T_CLIP}", **fields, runner=runner.description)
        except Exception as e:
            env.add("headline", f"{name} {backend}", error=_error(e), ok=False)
        finally:
            if runner is not None and runner.is_active:
                runner.deactivate()


def fusion_ratio(env, name: str, results: dict) -> None:
    eager, fused = results.get("bf16", {}).get("stage_ms", {}), results.get("bf16 + --fused", {}).get("stage_ms", {})
    if "fusion" not in eager or "fusion" not in fused:
        env.add("headline", f"{name} ST-BAVA fusion, fused vs eager", status="not measured: a route is missing")
        return
    ratio = eager["fusion"] / fused["fusion"]
    fields = {"eager_ms": eager["fusion"], "fused_ms": fused["fusion"], "speedup": ratio}
    if not env.dry:
        fields.update(target=f">= {TARGETS['fusion_speedup']:.0f}x", meets_target=ratio >= TARGETS["fusion_speedup"])
    env.add("headline", f"{name} ST-BAVA fusion stage, fused vs eager (float32 both)", **fields)


def global_attention_forms(env, s, seed: int) -> None:
    """One global block's attention at the model's shape in bf16: every form the backend can run."""
    from segment_anything.modeling.image_encoder import Attention

    from avs_engine.exact.sdpa_attention import SdpaAttention
    from avs_engine.exact.torch_ops import CudaRelPosAttention

    if env.dry:
        B, heads, D, grid = 2, 2, 64, 16
    else:
        B, heads, D, grid = T_CLIP, 16, 80, 64
    if env.over_budget("headline", "global attention forms", 30):
        return
    torch.manual_seed(seed)
    dt = torch.bfloat16
    attn = Attention(heads * D, heads, use_rel_pos=True, input_size=(grid, grid))
    with torch.no_grad():
        attn.rel_pos_h.normal_(0, 0.1)
        attn.rel_pos_w.normal_(0, 0.1)
    attn = attn.to(env.device, dt).eval()
    x = torch.randn(B, grid, grid, heads * D, device=env.device, dtype=dt)
    forms = [("SAM eager", attn), ("SDPA, bias folded into q/k (default without --fused)", SdpaAttention(attn, "folded")),
             ("SDPA, materialised bias mask", SdpaAttention(attn, "bias"))]
    if env.kernels_off:
        env.add("headline", "global attention: fused flash kernel", status=f"not available: {env.kernels_off}")
    else:
        try:
            if env.dry:
                from devtools.host_emulation import HostRelPosAttention

                kernel = HostRelPosAttention()
            else:
                from avs_engine.kernels.launchers import RelPosAttention

                kernel = RelPosAttention()
            forms.append(("fused flash kernel (--fused)", CudaRelPosAttention(attn, dt, kernel)))
        except Exception as e:
            env.add("headline", "global attention: fused flash kernel", error=_error(e), ok=False)
    flops = 4 * B * heads * (grid * grid) ** 2 * D
    with torch.inference_mode():
        ref = copy.deepcopy(attn).float()(x.float())  # float32 reference of the same (bf16-valued) weights
        times = {}
        for label, module in forms:
            try:
                out = module(x)
                t = env.time(lambda: module(x))
            except Exception as e:
                env.add("headline", f"global attention: {label}", error=_error(e), ok=False)
                continue
            times[label] = t["median_ms"]
            err = ((out.float() - ref).norm() / ref.norm()).item()
            env.add("headline", f"global attention B={B} heads={heads}x{D} grid {grid}: {label}", **t,
                    tflops=flops / t["median_ms"] / 1e9, rel_l2_vs_fp32=err)
    eager = times.get("SDPA, bias folded into q/k (default without --fused)")
    fused = times.get("fused flash kernel (--fused)")
    if eager and fused:
        env.add("headline", "global attention, fused kernel vs default SDPA form", speedup=eager / fused,
                vs_sam_eager=times.get("SAM eager", float("nan")) / fused)
