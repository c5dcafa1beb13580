"""Upsampling and thresholding where the model ran (the torch backend offers it on CUDA; forced here on the
CPU): the same masks as the host's logits_to_masks, and the pipeline uses it when offered."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from avs_engine.io.postprocess import logits_to_masks  # noqa: E402


@pytest.fixture(scope="module")
def runner(tiny_bundle):
    from avs_engine.backends.torch_backend import TorchRunner

    with TorchRunner(weights=tiny_bundle, device_masks=True) as r:
        yield r


def test_no_device_masks_on_the_cpu_by_default(tiny_bundle):
    from avs_engine.backends.torch_backend import TorchRunner

    with TorchRunner(weights=tiny_bundle) as r:
        assert r.masks_function() is None


@pytest.mark.parametrize("size_hw, mid", [((96, 160), 64), ((1080, 1920), 1024), ((37, 23), 0)])
def test_device_masks_equal_the_hosts(runner, size_hw, mid):
    rng = np.random.default_rng(sum(size_hw) + mid)
    logits = (rng.standard_normal((3, 1, 16, 16)) * 4).astype(np.float32)
    host = logits_to_masks(logits, size_hw, mid=mid)
    dev = runner.masks_function()(logits, size_hw, mid=mid)
    assert dev.dtype == bool and dev.shape == host.shape == (3, *size_hw)
    # The two compute the same bilinear weights but round the separable passes differently
    # (~1e-7 relative): only pixels whose upsampled logit is within rounding of 0 may differ.
    assert (dev != host).mean() <= 1e-4


def test_pipeline_uses_the_runners_masks(monkeypatch, tmp_path, runner, sample_video):
    from PIL import Image

    from avs_engine.runtime import Pipeline

    calls = []
    offered = runner.masks_function()

    def counted(*a, **k):
        calls.append(a[1])
        return offered(*a, **k)

    monkeypatch.setattr(runner, "masks_function", lambda: counted)
    p = Pipeline(runner, clip_seconds=3)
    doc = p.run_video(sample_video, tmp_path / "run", overlay=False, save_logits=True)
    assert len(calls) == 6 and set(calls) == {(96, 160)}  # one call per second, at the video's size
    streamed = {s.second: s.mask for s in p.iter_video(sample_video)}
    assert len(calls) == 12
    out = Path(doc["output_dir"])
    for sec, mask in streamed.items():
        logits = np.load(out / "logits" / f"{sec + 1:06d}.npy").astype(np.float32)
        png = np.asarray(Image.open(out / "masks" / f"{sec + 1:06d}.png")) > 0
        np.testing.assert_array_equal(png, mask)
        # and the host's function agrees up to rounding (the saved logits are float16)
        assert (logits_to_masks(logits[None, None], (96, 160), mid=runner.config.encoder.img_size)[0] != png).mean() < 1e-2
