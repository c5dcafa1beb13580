"""gpu_check's training section (``benchmarks/gpu_check.py``, step ``train``).

1. One avs-train step of vit_b and of vit_h at T = 5: one clip, the paper's recipe (SAM's encoder and
   the audio backbone frozen; adapters, audio projection, fusion and mask decoder trained), SDPA
   attention and checkpointed encoder blocks (avs-train's defaults on CUDA), Adam. Each precision
   avs-train offers: FP32 (IEEE: TF32 off), and bf16 autocast over FP32 weights where the recipe has
   a ``precision`` field. Step time (CUDA events, median after a warm-up step, which also allocates
   Adam's state), the peak of ``torch.cuda.max_memory_allocated`` over the timed steps, and the
   estimate avs-train checks before step 1 (``avs_engine.train.memory``), float32 terms.
2. vit_h inference in bf16 against FP32 (the torch backend, random weights, one generated clip of
   T = 5): per-frame mask IoU (logit > 0 at the decoder's resolution), median and minimum; the
   median should be at least 0.99.

In a dry run the same code runs on the CPU with the ``tiny`` preset (checkpointing forced on) at the
dry-run clip length; its numbers only show that the code runs.

The section runs last and stops at the time budget like the others. Building vit_h on the CPU takes
a while (twice: the training model and the inference reference), so to run it alone::

    python -m benchmarks.gpu_check --skip build check stbava global_attn stage e2e paths --time-budget 600
"""

from __future__ import annotations

import copy
import dataclasses
import time

import numpy as np
import torch

REAL_MODELS = ("vit_b", "vit_h")
DRY_MODELS = ("tiny",)
AGREEMENT_MODEL = {False: "vit_h", True: "tiny"}  # dry run -> model of the bf16 vs FP32 row
MIN_MEDIAN_IOU = 0.99
TRAIN_REPS = 3  # timed steps per row on a GPU (a vit_h step at T=5 is ~1 s in FP32)


def train_precisions() -> tuple[str, ...]:
    """FP32, and bf16 where avs-train's recipe has a precision (autocast over float32 weights)."""
    from avs_engine.train.recipe import TrainConfig

    return ("fp32", "bf16") if "precision" in {f.name for f in dataclasses.fields(TrainConfig)} else ("fp32",)


def random_batch(S: int, T: int, seed: int):
    """One clip as avs-train's host batch: images float32 [1,T,3,S,S], log_mel [1,T,1,96,64],
    masks bool [1,T,224,224] (about 30% object), every frame with a mask."""
    from avs_engine.train.input_pipeline import HostBatch

    rng = np.random.default_rng(seed)
    return HostBatch(rng.standard_normal((1, T, 3, S, S), dtype=np.float32),
                     (rng.standard_normal((1, T, 1, 96, 64), dtype=np.float32) * 2 - 1).astype(np.float32),
                     rng.random((1, T, 224, 224)) < 0.3, np.ones((1, T), bool))


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0]}"


def train_row(env, name: str, T: int, precision: str, seed: int) -> None:
    """One training step of preset ``name`` on ``env.device``: time, peak memory, estimate."""
    from avs_engine.config import resolve
    from avs_engine.train.input_pipeline import pinned
    from avs_engine.train.loop import accumulate_gradients, prepare_model
    from avs_engine.train.memory import estimate_step_memory
    from avs_engine.train.recipe import TrainConfig

    row = f"{name}: avs-train step T={T}, 1 clip, {precision}, SDPA + checkpointed blocks"
    if env.over_budget("train", row, 60 if env.cuda else 5):
        return
    over = dict(batch_clips=1, sdpa_attention=True, checkpoint_blocks=True, seed=seed)
    if precision != "fp32":
        over["precision"] = precision
    cfg = TrainConfig().replace(**over)
    model = opt = None
    try:
        t0 = time.perf_counter()
        model, _, how = prepare_model(resolve(name), cfg, env.device)
        model.to(env.device).train()
        build_s = time.perf_counter() - t0
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=cfg.lr)
        batch = random_batch(model.config.encoder.img_size, T, seed)
        if env.cuda:
            batch = pinned(batch)
        est = estimate_step_memory(model.config, clips=1, T=T, freeze=tuple(cfg.freeze), sdpa=how["sdpa"],
                                   checkpoint=how["checkpoint"], device_type=env.device.type,
                                   counts=(sum(p.numel() for p in model.parameters()), sum(p.numel() for p in params)))

        def step():
            opt.zero_grad(set_to_none=True)
            accumulate_gradients(model, batch, cfg, env.device)
            opt.step()

        t = env.time(step, reps=min(env.reps, TRAIN_REPS))
        peak = torch.cuda.max_memory_allocated() / 1e9 if env.cuda else None
        env.add("train", row, median_ms=t["median_ms"], first_call_ms=t["first_call_ms"], peak_gb=peak,
                estimate_gb=est.total / 1e9, build_s=build_s, ok=True)
    except Exception as e:  # out of memory included: a result to report, then the next row
        env.add("train", row, error=_error(e), ok=False)
    finally:
        del model, opt
        if env.cuda:
            torch.cuda.empty_cache()


def generated_clip(S: int, T: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One generated clip (sounding objects, its own audio): image float32 [T,3,S,S], log_mel [T,1,96,64]."""
    from avs_engine.data.prepared import generated_samples
    from avs_engine.io.preprocess import prepare_frames

    sample = next(generated_samples("test", 1, T, start=seed % 1000))
    return prepare_frames(sample.frames, S), sample.log_mel


def frame_ious(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Masks bool [T,H,W] -> per-frame IoU (1.0 where both are empty)."""
    out = []
    for x, y in zip(a, b):
        union = (x | y).sum()
        out.append(float((x & y).sum() / union) if union else 1.0)
    return out


def agreement_row(env, name: str, T: int, seed: int) -> None:
    """bf16 vs FP32 masks of the torch backend on one generated clip, random weights (seed 0)."""
    from avs_engine.backends.torch_backend import TorchRunner
    from avs_engine.reference import build_model

    row = f"{name}: inference bf16 vs fp32 masks, generated clip T={T}, random weights"
    if env.over_budget("train", row, 60 if env.cuda else 5):
        return
    try:
        base = build_model(name, seed=0)  # float32 on the CPU; each runner gets its own copy
        image, log_mel = generated_clip(base.config.encoder.img_size, T, seed)
        logits, desc = {}, {}
        for dtype in ("float32", "bfloat16"):
            runner = TorchRunner(model=copy.deepcopy(base), device=str(env.device), dtype=dtype).activate()
            try:
                logits[dtype] = runner.run_clip(image, log_mel)[:, 0].astype(np.float32)  # [T, L, L]
                desc[dtype] = runner.description
            finally:
                runner.deactivate()
                del runner
                if env.cuda:
                    torch.cuda.empty_cache()
        ious = frame_ious(logits["bfloat16"] > 0, logits["float32"] > 0)
        rel = float(np.linalg.norm(logits["bfloat16"] - logits["float32"]) / max(np.linalg.norm(logits["float32"]), 1e-12))
        median = float(np.median(ious))
        fields = dict(mask_iou_median=median, mask_iou_min=min(ious), logits_rel_l2=rel,
                      fp32_mask_fraction=float((logits["float32"] > 0).mean()), runner=desc["bfloat16"])
        if not env.dry:  # the tiny stand-in's masks say nothing about vit_h
            fields["ok"] = median >= MIN_MEDIAN_IOU
        env.add("train", row, **fields)
    except Exception as e:
        env.add("train", row, error=_error(e), ok=False)


def train_section(env, s, seed: int) -> None:
    """The section: training steps of each model and precision, then the bf16 agreement row."""
    models = DRY_MODELS if env.dry else REAL_MODELS
    T = s.video_seconds if env.dry else 5
    # FP32 means IEEE FP32 here, as in avs-train's defaults (TF32 is an explicit opt-in)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for name in models:
            for precision in train_precisions():
                train_row(env, name, T, precision, seed)
        agreement_row(env, AGREEMENT_MODEL[env.dry], T, seed)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
