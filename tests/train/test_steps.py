"""The training loop reads the loss only every log_every steps, indexes frames without
waiting for the device, and a resumed run continues exactly as an uninterrupted one."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from avs_engine.reference import build_model
from avs_engine.train.loop import rng_state, set_rng_state, train
from avs_engine.train.recipe import TrainConfig


def _recipe(**kw):
    base = dict(lr=2e-3, loss="bce+iou", target="lowres", freeze=(), batch_clips=2, epochs=1, steps_per_epoch=2)
    base.update(kw)
    return TrainConfig().replace(**base)


def test_every_generator_survives_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    torch.save({"rng": rng_state()}, tmp_path / "s.pt")
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(torch.load(tmp_path / "s.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_resumed_run_equals_an_uninterrupted_one(tmp_path, tiny_split):
    """Dropout (fusion) draws from torch's generator: resuming must restore it, bit for bit on a CPU."""
    cfg = _recipe(steps_per_epoch=2, batch_clips=1)
    quiet = dict(progress=False, log=lambda s: None)
    train(build_model("tiny").config, cfg.replace(epochs=2), tiny_split, None, tmp_path / "a", **quiet)
    train(build_model("tiny").config, cfg, tiny_split, None, tmp_path / "b", **quiet)
    torch.manual_seed(12345)  # whatever the process did in between
    train(build_model("tiny").config, cfg.replace(epochs=2), tiny_split, None, tmp_path / "b", resume=tmp_path / "b" / "last.pt",
          **quiet)
    a = torch.load(tmp_path / "a" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_loss_is_read_every_log_every_steps(tmp_path, tiny_split, monkeypatch):
    reads = []
    to_float = torch.Tensor.__float__

    def counting(self):
        reads.append(self.numel())
        return to_float(self)

    monkeypatch.setattr(torch.Tensor, "__float__", counting)
    ops = _Ops()
    with ops:
        res = train(build_model("tiny").config, _recipe(steps_per_epoch=8, batch_clips=1, log_every=4), tiny_split, None,
                    tmp_path, progress=True, log=lambda s: None)
    assert len(reads) == 2 + 1  # the progress bar at steps 4 and 8, the epoch's mean
    assert "nonzero" not in ops.ops  # no boolean indexing of device tensors
    assert np.isfinite(res.history[0]["train_loss"])
