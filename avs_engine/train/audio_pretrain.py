"""Pretrain a small audio backbone on generated clips, the way VGGish was pretrained on AudioSet.

The paper's recipe freezes a *pretrained* VGGish. No VGGish weights exist
here, and training the small audio CNN from scratch through the segmentation
loss alone is slow (it sees one weak gradient per frame). So, for generated
data, the backbone is first trained as a classifier of which object kinds
sound in each second (multi-label, a linear head on the 128-d embedding),
then frozen for the ST-BAVA training, as VGGish is. Not in the paper: an
explicit recipe option (``audio_pretrain_steps``, 0 = off).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..config import AudioConfig
from ..data.generator import plan_clip
from ..data.kinds import KINDS
from ..reference.audio_backbone import build_audio_backbone


def sounding_kind_labels(names: list[str], T: int) -> np.ndarray:
    """float32 [N,T,K]: 1 where kind k sounds in second t of generated clip ``gen_<seed>``."""
    y = np.zeros((len(names), T, len(KINDS)), np.float32)
    for i, name in enumerate(names):
        plan = plan_clip(int(name.split("_")[1]), T)
        for j, o in enumerate(plan.objects):
            y[i, :, o.kind] = np.maximum(y[i, :, o.kind], plan.sounding[:, j])
    return y


def pretrain_audio(cfg: AudioConfig, split, steps: int, batch: int = 64, lr: float = 1e-3, seed: int = 0,
                   log=print, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Train ``build_audio_backbone(cfg)`` + a linear head on ``split``'s seconds on ``device``;
    return the backbone's state_dict (on the CPU).

    The same run on every device up to float rounding: the weights are initialised on the CPU and
    the examples drawn by a CPU generator, then moved. The loss is read every 100 steps only (each
    read waits for the device)."""
    device = torch.device(device)
    torch.manual_seed(seed)
    net = build_audio_backbone(cfg)
    head = torch.nn.Linear(cfg.embed_dim, len(KINDS))
    net.to(device)
    head.to(device)
    x = torch.from_numpy(np.asarray(split.log_mel, np.float32).reshape(-1, 1, 96, 64)).to(device)  # [N*T,1,96,64]
    y = torch.from_numpy(sounding_kind_labels(split.names, split.T).reshape(-1, len(KINDS))).to(device)  # [N*T,K]
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=lr)
    g = torch.Generator().manual_seed(seed)
    window = []  # the last <= 100 losses, device scalars
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(x), (batch,), generator=g).to(device, non_blocking=True)
        loss = F.binary_cross_entropy_with_logits(head(net(x[idx])), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window = [*window[-99:], loss.detach()]
        if step % 100 == 0 or step == steps:
            log(f"audio pretraining step {step}/{steps}: loss {float(torch.stack(window).mean()):.4f}")
    return {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}
