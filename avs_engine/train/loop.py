"""The training loop: batches of clips, the recipe's loss, validation mIoU each epoch,
best checkpoint (our bundle + the authors' layout), resume, fixed seeds.

Data sources are split objects with ``image_input(i)``, ``log_mel_input(i)``,
``masks(i)``, ``mask_valid`` and ``burst`` (``data.PreparedSplit`` or
``data.StreamingSplit``).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..errors import ConfigError
from ..reference.build import build_model
from .checkpoints import host_state_dict, write_best, write_last
from .evaluate import evaluate_split, torch_predictor
from .memory import set_trainable  # noqa: F401  (re-exported: the loop's freezing)
from .input_pipeline import batch_indices, batch_source, host_batch  # noqa: F401  (host_batch: the loop's batches)
from .recipe import TrainConfig
from ..reference.variants import apply_variant

COMPUTE_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def forward_clips(model, images: torch.Tensor, log_mel: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """B clips at once: images [B,T,3,S,S], log_mel [B,T,1,96,64] -> logits [B,T,1,L,L] (float32).

    Audio, encoder and decoder run on all B*T frames together; the fusion runs
    per clip (it mixes the T frames of one clip only). ``dtype`` (bfloat16/float16): the
    image encoder under autocast (``exact.mixed_precision``; its norms float32 after
    :func:`prepare_model`), its output and every other stage float32.
    """
    from ..exact.mixed_precision import autocast

    B, T = images.shape[:2]
    a128 = model.embed_audio(log_mel.flatten(0, 1))  # [B*T, A]
    with autocast("image_encoder", images.device.type, dtype):
        enc = model.encode(images.flatten(0, 1), a128)  # [B*T, C, G, G]
    enc = enc.float()  # a no-op here (the neck ends in a float32 LayerNorm2d); fusion and decoder take float32
    dense, sparse = [], []
    for b in range(B):
        d, s = model.fuse(enc[b * T:(b + 1) * T], a128[b * T:(b + 1) * T])
        dense.append(d)
        sparse.append(s)
    logits = model.decode(enc, torch.cat(dense), torch.cat(sparse))  # [B*T, 1, L, L]
    return logits.unflatten(0, (B, T))


@dataclass(frozen=True)
class LossFrames:
    """Which frames of a batch the loss reads, worked out on the host from the split's arrays
    (boolean indexing of device tensors would wait for the device every step)."""

    frames: np.ndarray  # int64 [n]: indices into the flattened B*T frames that have a mask
    has: np.ndarray  # int64 [m]: indices into ``frames`` of those with an object in the mask

    @classmethod
    def of(cls, masks: np.ndarray, valid: np.ndarray) -> "LossFrames":
        """masks bool [B,T,h,w], valid bool [B,T] (numpy)."""
        frames = np.flatnonzero(np.asarray(valid, bool).reshape(-1))
        m = np.asarray(masks).reshape(-1, *np.shape(masks)[2:])[frames]
        return cls(frames, np.flatnonzero(m.reshape(len(frames), -1).any(1)))


def mask_loss(model, logits: torch.Tensor, masks: torch.Tensor, valid, cfg: TrainConfig, *,
              frames: LossFrames | None = None, totals: tuple[int, int] | None = None) -> torch.Tensor:
    """logits [B,T,1,L,L], masks bool [B,T,224,224], valid bool [B,T] -> scalar loss over the valid frames.

    BCE is the mean over the valid frames' pixels, the soft-IoU term (``bce+iou``) the mean over
    the valid frames with an object. ``frames``: :class:`LossFrames` of this batch (default: read
    from ``masks``/``valid``, which waits for the device). ``totals``: (valid frames, those with an
    object) of the whole step when this batch is one micro-batch of it: the micro-batches' losses
    then add up to the loss of the whole batch, and so do their gradients.
    """
    if frames is None:
        frames = LossFrames.of(masks.cpu().numpy(), valid.cpu().numpy() if torch.is_tensor(valid) else valid)
    n_frames, n_has = totals if totals is not None else (len(frames.frames), len(frames.has))
    idx = torch.from_numpy(frames.frames).to(logits.device, non_blocking=True)
    lg = logits.flatten(0, 1).index_select(0, idx)  # [n, 1, L, L]
    gt = masks.flatten(0, 1).index_select(0, idx).unsqueeze(1).to(lg.dtype)  # [n, 1, 224, 224]
    if cfg.target == "full":
        lg = model.upsample(lg, gt.shape[-2:])
    else:
        gt = F.adaptive_avg_pool2d(gt, lg.shape[-2:])
    loss = F.binary_cross_entropy_with_logits(lg, gt, reduction="sum") / max(1, n_frames * gt[0].numel())
    if cfg.loss == "bce+iou" and len(frames.has):
        has = torch.from_numpy(frames.has).to(logits.device, non_blocking=True)
        p = torch.sigmoid(lg.index_select(0, has)).flatten(1)
        t = gt.index_select(0, has).flatten(1)
        inter = (p * t).sum(1)
        union = (p + t - p * t).sum(1)
        loss = loss + (1 - inter / union.clamp_min(1e-6)).sum() / max(1, n_has)
    return loss


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine" and total > cfg.warmup_steps:
        u = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(u, 1.0))))
    return cfg.lr


def accumulate_gradients(model, batch, cfg: TrainConfig, device, scaler=None) -> torch.Tensor:
    """Forward and backward of one step's batch (:class:`~.input_pipeline.HostBatch`: numpy, or
    pinned tensors for CUDA) in micro-batches of ``cfg.micro_clips`` clips; the gradients add up to
    those of the whole batch at once (up to float rounding, and dropout draws). ``cfg.precision``:
    the encoder's autocast dtype; ``scaler``: a ``torch.amp.GradScaler`` (fp16) that scales each
    loss before its backward pass. Returns the step's loss (unscaled), a device scalar (not read here)."""
    images, log_mel, masks, valid = batch

    def dev(a):
        # from pinned memory the copy is asynchronous; from numpy (a CPU run) .to is a no-op
        t = a if torch.is_tensor(a) else torch.from_numpy(np.ascontiguousarray(a))
        return t.to(device, non_blocking=True)

    whole = LossFrames.of(masks, valid)
    totals = (len(whole.frames), len(whole.has))
    total = torch.zeros((), device=device)
    B, mb = len(images), cfg.micro_clips
    for s in range(0, B, mb):
        sl = slice(s, s + mb)
        frames = LossFrames.of(masks[sl], valid[sl])
        if not len(frames.frames):
            continue  # no frame with a mask: nothing to learn from these clips
        logits = forward_clips(model, dev(images[sl]), dev(log_mel[sl]), COMPUTE_DTYPES[cfg.precision])
        loss = mask_loss(model, logits, dev(masks[sl]), None, cfg, frames=frames, totals=totals)
        (loss if scaler is None else scaler.scale(loss)).backward()
        total += loss.detach()
    return total


def optimizer_step(opt: torch.optim.Optimizer, params: list, cfg: TrainConfig, scaler=None) -> None:
    """Clip (``cfg.grad_clip``) and step. With a GradScaler the gradients are unscaled first, and
    a step whose gradients overflowed is skipped (the scale then drops)."""
    if scaler is not None and cfg.grad_clip:
        scaler.unscale_(opt)
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    if scaler is None:
        opt.step()
    else:
        scaler.step(opt)
        scaler.update()


def resolve_device(device: str) -> torch.device:
    """The training device, checked (one :class:`ConfigError` line if this machine has no such device)."""
    from ..errors import BackendError
    from ..reference.device import torch_device

    try:
        return torch_device(torch, device)
    except BackendError as e:
        raise ConfigError(str(e)) from None


def prepare_model(model_config: ModelConfig, cfg: TrainConfig, device: torch.device, init: Callable | None = None):
    """Built, initialised and made trainable on the CPU (not moved yet), with the memory passes
    applied and, for bf16/fp16, the encoder's norms made float32 islands. Returns (model,
    trainable counts per group, {"sdpa": bool, "checkpoint": bool})."""
    from ..exact.mixed_precision import keep_norms_float32
    from ..exact.sdpa_attention import sdpa_by_default, use_sdpa_attention
    from .memory import checkpoint_by_default, checkpoint_encoder_blocks

    model = build_model(model_config, device="cpu", seed=cfg.seed)
    if init is not None:
        init(model)
    apply_variant(model, cfg.fusion_variant)
    sdpa = sdpa_by_default(device) if cfg.sdpa_attention is None else cfg.sdpa_attention
    ckpt = checkpoint_by_default(model.config) if cfg.checkpoint_blocks is None else cfg.checkpoint_blocks
    if sdpa:
        use_sdpa_attention(model)
    checkpoint_encoder_blocks(model, ckpt)
    if cfg.precision != "fp32":
        keep_norms_float32(model.image_encoder)  # mean and variance over the channels in float32
    counts = set_trainable(model, tuple(cfg.freeze))
    return model, counts, {"sdpa": sdpa, "checkpoint": ckpt}


def check_step_memory(model, cfg: TrainConfig, device: torch.device, T: int, how: dict) -> str:
    """Estimate one step's peak before step 1; raise one :class:`ConfigError` line with the
    numbers and what to change when it does not fit. Returns the estimate, described."""
    from .memory import OVERHEAD, device_memory, estimate_step_memory, refusal

    n_all = sum(p.numel() for p in model.parameters())
    counts = (n_all, sum(p.numel() for p in model.parameters() if p.requires_grad))

    def estimate(clips, sdpa, ckpt):
        return estimate_step_memory(model.config, clips=clips, T=T, freeze=tuple(cfg.freeze), sdpa=sdpa, checkpoint=ckpt,
                                    device_type=device.type, counts=counts)

    available, source = device_memory(device)
    # On a CPU the interpreter, the libraries and the model are already in RAM, outside MemAvailable.
    resident = 4 * n_all + OVERHEAD["cpu"] if device.type == "cpu" else 0
    why = refusal(estimate, clips=cfg.micro_clips, T=T, sdpa=how["sdpa"], checkpoint=how["checkpoint"],
                  available=available, source=source, resident=resident, batch_clips=cfg.batch_clips)
    if why:
        raise ConfigError(why)
    est = estimate(cfg.micro_clips, how["sdpa"], how["checkpoint"])
    return f"{est.total / 1e9:.1f} GB for {est.describe()}"


def rng_state() -> dict:
    """Every generator a run draws from: python ``random``, numpy's global one, torch CPU and CUDA."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    np_state = np.random.get_state(legacy=False)
    state["numpy"] = {"bit_generator": np_state["bit_generator"], "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                      "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                      "gauss": float(np_state["gauss"])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": n["bit_generator"], "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])


@dataclass
class TrainResult:
    out_dir: Path
    best_bundle: Path | None
    best_miou: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def train(
    model_config: ModelConfig,
    cfg: TrainConfig,
    train_split,
    val_split,
    out_dir: str | Path,
    *,
    device: str = "cpu",
    init: Callable | None = None,
    resume: str | Path | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    check_memory: bool = True,
) -> TrainResult:
    """Train and validate; writes ``last.pt`` (resume state), ``best.safetensors``,
    ``best_authors.pth`` and ``history.jsonl`` into ``out_dir``.

    ``init(model)`` loads starting weights (SAM / SAMA / ST-BAVA / VGGish) into the built model.
    ``check_memory``: estimate one step's peak first and refuse (one line with the numbers) when
    the device does not have it (:mod:`.memory`).
    """
    cfg.validate()
    dev = resolve_device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    model, counts, how = prepare_model(model_config, cfg, dev, init)
    n = len(train_split)
    T = int(getattr(train_split, "T", 0) or train_split.image_input(0).shape[0])
    estimate = check_step_memory(model, cfg, dev, T, how) if check_memory else None
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    # fp16 gradients underflow without loss scaling; bf16 has float32's exponent range
    scaler = torch.amp.GradScaler(dev.type) if cfg.precision == "fp16" else None
    steps_per_epoch = cfg.steps_per_epoch or max(1, n // cfg.batch_clips)
    total = steps_per_epoch * cfg.epochs
    step, best, history = 0, -1.0, []
    if resume is not None:
        state = torch.load(resume, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"], strict=True)
        opt.load_state_dict(state["optimizer"])
        step, best, history = int(state["step"]), float(state["best"]), list(json.loads(state["history"]))
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        if "rng" in state:
            set_rng_state(state["rng"])
        else:  # written before every generator was kept
            torch.set_rng_state(state["torch_rng"])
        log(f"resumed from {resume} at step {step}/{total} (best val mIoU {best:.4f})")
    micro = f" in micro-batches of {cfg.micro_clips}" if cfg.micro_clips < cfg.batch_clips else ""
    precision = f", image encoder in {cfg.precision} autocast" if cfg.precision != "fp32" else ""
    log(f"training {model_config.name} ({cfg.fusion_variant}) on {n} clips: {cfg.epochs} epoch(s) x {steps_per_epoch} steps, "
        f"batch {cfg.batch_clips} clips{micro}{precision}; trainable: " + ", ".join(f"{g} {c / 1e6:.2f}M" for g, c in counts.items()))
    if estimate is not None:
        log(f"memory: about {estimate} on {dev}")

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc="train", unit="step", dynamic_ncols=True)
    t_start = time.perf_counter()
    best_path = out / "best.safetensors" if best >= 0 else None
    # Every remaining step's batch, in order, built ahead by cfg.workers threads (input_pipeline);
    # they run into the next epoch while this one validates.
    batches = batch_source(train_split, batch_indices(n, cfg.batch_clips, cfg.seed, steps_per_epoch, step, total),
                           workers=cfg.workers, depth=cfg.prefetch_batches, pin=dev.type == "cuda")
    try:
        while step < total:
            epoch = step // steps_per_epoch
            model.train()
            # Loss sums stay on the device; reading one waits for the device, so only every log_every steps.
            epoch_sum, window_sum, window_n, epoch_steps = torch.zeros((), device=dev), torch.zeros((), device=dev), 0, 0
            while step < (epoch + 1) * steps_per_epoch:
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, total, cfg)
                opt.zero_grad(set_to_none=True)
                loss = accumulate_gradients(model, next(batches), cfg, dev, scaler)
                optimizer_step(opt, params, cfg, scaler)
                epoch_sum += loss
                window_sum += loss
                window_n += 1
                epoch_steps += 1
                step += 1
                if bar is not None:
                    bar.update(1)
                    if window_n == cfg.log_every or step == total:
                        bar.set_postfix(loss=f"{float(window_sum) / window_n:.4f}", lr=f"{opt.param_groups[0]['lr']:.2e}")
                if window_n == cfg.log_every:
                    window_sum.zero_()
                    window_n = 0
            model.eval()
            val = evaluate_split(val_split, torch_predictor(model, dev)) if val_split is not None and len(val_split) else None
            rec = {"epoch": epoch + 1, "step": step,
                   "train_loss": float(epoch_sum) / epoch_steps if epoch_steps else float("nan"),
                   "elapsed_s": round(time.perf_counter() - t_start, 1)}
            if val is not None:
                rec.update({"val_miou": val["all"]["miou"], "val_f": val["all"]["f_score"]})
            history.append(rec)
            improved = val is not None and val["all"]["miou"] > best
            state = host_state_dict(model)  # the model stays on its device
            if improved or (val is None):
                best = val["all"]["miou"] if val is not None else best
                meta = {"fusion_variant": cfg.fusion_variant, "train_config": json.dumps(cfg.to_dict()),
                        "epoch": str(epoch + 1), "step": str(step)}
                if val is not None:
                    meta["val"] = json.dumps(val["all"])
                # the weights do not depend on the variant; the metadata names it for avs-eval
                best_path = write_best(model, state, out, meta)
            write_last(state, opt, out, step=step, best=best, history=history, rng=rng_state(), scaler=scaler)
            del state
            with open(out / "history.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
            msg = f"epoch {epoch + 1}/{cfg.epochs}: train loss {rec['train_loss']:.4f}"
            if val is not None:
                msg += f", val mIoU {val['all']['miou']:.4f} F {val['all']['f_score']:.4f}" + (" (best, saved)" if improved else "")
            if bar is not None:
                bar.write(msg)
            else:
                log(msg)
    finally:
        batches.close()  # joins the prefetching thread, also when a step failed
    if bar is not None:
        bar.close()
    return TrainResult(out, best_path, best, history, time.perf_counter() - t_start)
