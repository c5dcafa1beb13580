"""The live step (a ring of per-second encoder outputs and audio embeddings) gives the causal windows' masks:
equal to running each window ``[t-T+1, t]`` through ``Runner.run_clip`` offline, on ONNX Runtime (the bundled
demo graphs) and on torch."""

from __future__ import annotations

import numpy as np
import pytest

from avs_engine.io.postprocess import logits_to_masks
from avs_engine.runtime.causal import causal_inputs, causal_logits
from avs_engine.runtime.live import LiveStep


def _runner(kind, tiny_bundle):
    from avs_engine.backends.model_spec import ModelSpec

    if kind == "onnxruntime":
        return ModelSpec.choose(threads=1).create().activate()   # the bundled demo model's graphs
    return ModelSpec.choose(weights=tiny_bundle, backend="torch", threads=1).create().activate()


@pytest.mark.parametrize("kind", ["onnxruntime", "torch"])
@pytest.mark.parametrize("T", [3, 5])
def test_live_step_equals_offline_causal_windows(kind, T, tiny_bundle, sample_video):
    runner = _runner(kind, tiny_bundle)
    S = runner.config.encoder.img_size
    frames, examples = causal_inputs(sample_video, S)
    assert len(frames) == 6
    offline = list(causal_logits(runner, frames, examples, T))
    step = LiveStep(runner, T)
    calls = {"image_encoder": 0, "audio": 0, "fusion": 0, "mask_decoder": 0}
    run = runner.run

    def counted(stage, inputs):
        calls[stage] += 1
        if stage in ("image_encoder", "audio", "mask_decoder"):
            assert next(iter(inputs.values())).shape[0] == 1, stage   # one frame per second
        return run(stage, inputs)

    runner.run = counted
    for t in range(len(frames)):
        res = step.push(t, frames[t], examples[t: t + 1])
        assert res.seconds == tuple(range(max(0, t - T + 1), t + 1))
        ref = offline[t]
        assert res.logits.shape == ref.shape
        scale = float(np.abs(ref).max())
        assert float(np.abs(res.logits - ref).max()) <= 1e-4 * max(scale, 1.0), t
        m_live = logits_to_masks(res.logits, (96, 160), mid=S)
        m_off = logits_to_masks(ref, (96, 160), mid=S)
        assert (m_live != m_off).mean() <= 1e-3, t   # a pixel right at the threshold may flip
    assert calls == {k: len(frames) for k in calls}


def test_live_step_window_skips_dropped_seconds(tiny_bundle, sample_video):
    runner = _runner("onnxruntime", tiny_bundle)
    frames, examples = causal_inputs(sample_video, runner.config.encoder.img_size)
    step = LiveStep(runner, 3)
    for t in (0, 1, 3, 5):   # 2 and 4 dropped
        res = step.push(t, frames[t], examples[t: t + 1])
    assert res.seconds == (3, 5)
    with pytest.raises(ValueError, match="increase"):
        step.push(5, frames[5], examples[5:6])
