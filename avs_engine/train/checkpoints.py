"""What avs-train writes at the end of an epoch, from a host copy of the weights: the model stays
where it trains (``model.cpu()`` and back would copy every weight twice, and on a GPU the copies
back would reallocate every parameter).

Every file is written to a temporary name first and renamed, so a run killed mid-write leaves the
previous file whole.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..reference.checkpoint import save_authors_checkpoint, save_bundle


def host_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's state_dict on the host: device tensors copied to the CPU (the copies wait for
    the device), CPU tensors as they are (no copy: they are written before the next step changes them)."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def write_best(model: torch.nn.Module, state: dict[str, torch.Tensor], out: Path, meta: dict[str, str]) -> Path:
    """``best.safetensors`` (our bundle: weights, config, ``meta``) and ``best_authors.pth`` (the
    authors' layout) from ``state`` (:func:`host_state_dict`); returns the bundle's path."""
    path = save_bundle(model, out / "best.safetensors", meta, state=state)
    save_authors_checkpoint(model, out / "best_authors.pth", state=state)
    return path


def write_last(state: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer, out: Path, *, step: int, best: float,
               history: list[dict], rng: dict, scaler=None) -> Path:
    """``last.pt``, what a resume reads: the weights (``state``), Adam's state, the step, the best
    score, the history, every generator's state (``rng``) and an fp16 run's loss scale (``scaler``)."""
    tmp, path = out / ".last.pt.tmp", out / "last.pt"
    doc = {"model": state, "optimizer": optimizer.state_dict(), "step": step, "best": best,
           "history": json.dumps(history), "rng": rng}
    if scaler is not None:
        doc["scaler"] = scaler.state_dict()
    torch.save(doc, tmp)
    tmp.replace(path)
    return path
