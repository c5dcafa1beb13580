"""``Runner.run_clips``: several clips of different T at once equal ``run_clip`` on each, and on the torch
backend nothing crosses to the host between the stages (the conversions to numpy/host are counted)."""

from __future__ import annotations

import numpy as np
import pytest

from avs_engine.backends import create_runner


def _clips(runner, Ts, seed):
    rng = np.random.default_rng(seed)
    S = runner.config.encoder.img_size
    return [(rng.standard_normal((T, 3, S, S)).astype(np.float32), rng.standard_normal((T, 1, 96, 64)).astype(np.float32))
            for T in Ts]


@pytest.fixture(scope="module")
def torch_runner():
    pytest.importorskip("torch")
    return create_runner("torch", config="tiny", seed=0).activate()


def test_torch_run_clips_equals_run_clip_on_each(torch_runner):
    clips = _clips(torch_runner, (2, 3), seed=11)
    clock = torch_runner.stage_clock()
    got = torch_runner.run_clips(clips, clock)
    assert [g.shape[0] for g in got] == [2, 3]
    for (image, log_mel), logits in zip(clips, got):
        want = torch_runner.run_clip(image, log_mel)
        np.testing.assert_allclose(logits, want, rtol=0, atol=1e-5 * float(np.abs(want).max()))
        assert np.array_equal(logits > 0, want > 0)
    assert set(clock.seconds()) == {"audio", "image_encoder", "fusion", "mask_decoder"}


def test_torch_run_clips_crosses_to_the_host_once(torch_runner, monkeypatch):
    """Only the logits leave the device: one .cpu()/.numpy() for the batch, no .item()/.tolist() between stages."""
    import torch

    counts = {"cpu": 0, "numpy": 0, "item": 0, "tolist": 0, "to_host": 0}
    for name in ("cpu", "numpy", "item", "tolist"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _name=name, _original=original, **k):
            counts[_name] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    original_to = torch.Tensor.to

    def to(self, *a, **k):
        target = a[0] if a else k.get("device")
        if isinstance(target, (str, torch.device)) and torch.device(target).type == "cpu" and self.device.type != "cpu":
            counts["to_host"] += 1
        return original_to(self, *a, **k)

    monkeypatch.setattr(torch.Tensor, "to", to)
    torch_runner.run_clips(_clips(torch_runner, (2, 3, 1), seed=12))
    assert counts == {"cpu": 1, "numpy": 1, "item": 0, "tolist": 0, "to_host": 0}, counts


def test_onnxruntime_run_clips_equals_run_clip_on_each():
    pytest.importorskip("onnxruntime")
    from avs_engine.models import DEMO_GRAPHS

    if not (DEMO_GRAPHS / "manifest.json").is_file():
        pytest.skip(f"the demo model's ONNX graphs are missing ({DEMO_GRAPHS})")
    runner = create_runner("onnxruntime", engine_dir=DEMO_GRAPHS, threads=1).activate()
    clips = _clips(runner, (3, 2), seed=13)
    for (image, log_mel), logits in zip(clips, runner.run_clips(clips)):
        assert np.array_equal(logits, runner.run_clip(image, log_mel))
    assert runner.run_clips([]) == []
