"""The training loop: batches of clips, the recipe's loss, validation mIoU each epoch,
best checkpoint (our bundle + the authors' layout), resume, fixed seeds.

Data sources are split objects with ``image_input(i)``, ``log_mel_input(i)``,
``masks(i)``, ``mask_valid`` and ``burst`` (``data.PreparedSplit`` or
``data.StreamingSplit``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..config import ModelConfig
from ..reference.build import build_model
from ..reference.checkpoint import save_authors_checkpoint, save_bundle
from .evaluate import evaluate_split, torch_predictor
from .recipe import TrainConfig
from .variants import apply_variant

_GROUP_PREFIXES = {
    "adapters": ("image_encoder.prompt_generator.",),
    "image_encoder": ("image_encoder.",),
    "audio": ("audio_backbone.",),
    "fusion": ("layers.", "audio_embed_layer."),
    "mask_decoder": ("mask_decoder.",),
}


def set_trainable(model: torch.nn.Module, freeze: tuple[str, ...]) -> dict[str, int]:
    """Freeze the named groups (the encoder's adapters stay trainable unless "adapters" is named).
    Returns trainable parameter counts per group."""
    counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        group = next(g for g, pre in _GROUP_PREFIXES.items() if name.startswith(pre))
        p.requires_grad_(group not in freeze)
        if p.requires_grad:
            counts[group] = counts.get(group, 0) + p.numel()
    return counts


def forward_clips(model, images: torch.Tensor, log_mel: torch.Tensor) -> torch.Tensor:
    """B clips at once: images [B,T,3,S,S], log_mel [B,T,1,96,64] -> logits [B,T,1,L,L].

    Audio, encoder and decoder run on all B*T frames together; the fusion runs
    per clip (it mixes the T frames of one clip only).
    """
    B, T = images.shape[:2]
    a128 = model.embed_audio(log_mel.flatten(0, 1))  # [B*T, A]
    enc = model.encode(images.flatten(0, 1), a128)  # [B*T, C, G, G]
    dense, sparse = [], []
    for b in range(B):
        d, s = model.fuse(enc[b * T:(b + 1) * T], a128[b * T:(b + 1) * T])
        dense.append(d)
        sparse.append(s)
    logits = model.decode(enc, torch.cat(dense), torch.cat(sparse))  # [B*T, 1, L, L]
    return logits.unflatten(0, (B, T))


def mask_loss(model, logits: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """logits [B,T,1,L,L], masks bool [B,T,224,224], valid bool [B,T] -> scalar loss over valid frames."""
    lg = logits.flatten(0, 1)[valid.flatten()]  # [N, 1, L, L]
    gt = masks.flatten(0, 1)[valid.flatten()].unsqueeze(1).float()  # [N, 1, 224, 224]
    if cfg.target == "full":
        lg = model.upsample(lg, gt.shape[-2:])
    else:
        gt = F.adaptive_avg_pool2d(gt, lg.shape[-2:])
    loss = F.binary_cross_entropy_with_logits(lg, gt)
    if cfg.loss == "bce+iou":
        has = gt.flatten(1).sum(1) > 0
        if has.any():
            p = torch.sigmoid(lg[has]).flatten(1)
            t = gt[has].flatten(1)
            inter = (p * t).sum(1)
            union = (p + t - p * t).sum(1)
            loss = loss + (1 - inter / union.clamp_min(1e-6)).mean()
    return loss


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine" and total > cfg.warmup_steps:
        u = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
        return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(u, 1.0))))
    return cfg.lr


def _batch(split, idx, device):
    images = torch.from_numpy(np.stack([split.image_input(i) for i in idx])).to(device)
    log_mel = torch.from_numpy(np.stack([split.log_mel_input(i) for i in idx])).to(device)
    masks = torch.from_numpy(np.stack([split.masks(i) for i in idx])).to(device)
    valid = torch.from_numpy(np.stack([split.mask_valid[i] for i in idx])).to(device)
    return images, log_mel, masks, valid


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
) -> TrainResult:
    """Train and validate; writes ``last.pt`` (resume state), ``best.safetensors``,
    ``best_authors.pth`` and ``history.jsonl`` into ``out_dir``.

    ``init(model)`` loads starting weights (SAM / SAMA / ST-BAVA / VGGish) into the built model.
    """
    cfg.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = torch.device(device)
    model = build_model(model_config, device="cpu", seed=cfg.seed)
    if init is not None:
        init(model)
    apply_variant(model, cfg.fusion_variant)
    model.to(dev)
    counts = set_trainable(model, tuple(cfg.freeze))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = len(train_split)
    steps_per_epoch = cfg.steps_per_epoch or max(1, n // cfg.batch_clips)
    total = steps_per_epoch * cfg.epochs
    step, best, history = 0, -1.0, []
    if resume is not None:
        state = torch.load(resume, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"], strict=True)
        opt.load_state_dict(state["optimizer"])
        step, best, history = int(state["step"]), float(state["best"]), list(json.loads(state["history"]))
        torch.set_rng_state(state["torch_rng"])
        log(f"resumed from {resume} at step {step}/{total} (best val mIoU {best:.4f})")
    log(f"training {model_config.name} ({cfg.fusion_variant}) on {n} clips: {cfg.epochs} epoch(s) x {steps_per_epoch} steps, "
        f"batch {cfg.batch_clips} clips; trainable: " + ", ".join(f"{g} {c / 1e6:.2f}M" for g, c in counts.items()))

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc="train", unit="step", dynamic_ncols=True)
    t_start = time.perf_counter()
    best_path = out / "best.safetensors" if best >= 0 else None
    while step < total:
        epoch = step // steps_per_epoch
        order = np.random.default_rng([cfg.seed, epoch]).permutation(max(n, steps_per_epoch * cfg.batch_clips)) % n
        model.train()
        losses = []
        while step < (epoch + 1) * steps_per_epoch:
            k = step - epoch * steps_per_epoch
            idx = order[k * cfg.batch_clips:(k + 1) * cfg.batch_clips]
            images, log_mel, masks, valid = _batch(train_split, idx, dev)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, cfg)
            logits = forward_clips(model, images, log_mel)
            loss = mask_loss(model, logits, masks, valid, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", lr=f"{opt.param_groups[0]['lr']:.2e}")
        model.eval()
        val = evaluate_split(val_split, torch_predictor(model, dev)) if val_split is not None and len(val_split) else None
        rec = {"epoch": epoch + 1, "step": step, "train_loss": float(np.mean(losses)) if losses else float("nan"),
               "elapsed_s": round(time.perf_counter() - t_start, 1)}
        if val is not None:
            rec.update({"val_miou": val["all"]["miou"], "val_f": val["all"]["f_score"]})
        history.append(rec)
        improved = val is not None and val["all"]["miou"] > best
        if improved or (val is None):
            best = val["all"]["miou"] if val is not None else best
            meta = {"fusion_variant": cfg.fusion_variant, "train_config": json.dumps(cfg.to_dict()),
                    "epoch": str(epoch + 1), "step": str(step)}
            if val is not None:
                meta["val"] = json.dumps(val["all"])
            # the weights do not depend on the variant; the metadata names it for avs-eval
            best_path = save_bundle(model.cpu(), out / "best.safetensors", meta)
            save_authors_checkpoint(model, out / "best_authors.pth")
            model.to(dev)
        torch.save({
            "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "best": best,
            "history": json.dumps(history), "torch_rng": torch.get_rng_state(),
        }, out / ".last.pt.tmp")
        (out / ".last.pt.tmp").replace(out / "last.pt")
        with open(out / "history.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        msg = f"epoch {epoch + 1}/{cfg.epochs}: train loss {rec['train_loss']:.4f}"
        if val is not None:
            msg += f", val mIoU {val['all']['miou']:.4f} F {val['all']['f_score']:.4f}" + (" (best, saved)" if improved else "")
        if bar is not None:
            bar.write(msg)
        else:
            log(msg)
    if bar is not None:
        bar.close()
    return TrainResult(out, best_path, best, history, time.perf_counter() - t_start)
