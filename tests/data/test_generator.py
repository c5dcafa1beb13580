"""The sounding-object generator: seeds decide everything, ground truth follows the schedule."""

from __future__ import annotations

import numpy as np
import pytest

from avs_engine.data.generator import (
    SPLIT_SEED_BASE, generate_clip, plan_clip, render_frame, segment_edges, sounding_mask, split_seeds,
)
from avs_engine.data.kinds import KINDS, SAMPLE_RATE, kind_sound


def test_same_seed_same_clip_and_seeds_differ():
    a, b, c = generate_clip(7, size=(96, 96)), generate_clip(7, size=(96, 96)), generate_clip(8, size=(96, 96))
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert not np.array_equal(a.frames, c.frames)
    assert a.audio.shape == (5 * SAMPLE_RATE,) and a.frames.shape == (5, 96, 96, 3)


def test_split_seed_ranges_are_disjoint():
    seen = set()
    for split in SPLIT_SEED_BASE:
        seeds = set(split_seeds(split, 1000))
        assert not seeds & seen
        seen |= seeds
    with pytest.raises(ValueError):
        split_seeds("holdout", 3)


def test_ground_truth_is_the_sounding_objects_pixels():
    for seed in range(6):
        clip = generate_clip(seed, size=(64, 64))
        plan = clip.plan
        for l in range(5):
            _, labels = render_frame(plan, l + 15 / 16, (64, 64))
            want = np.isin(labels, np.flatnonzero(plan.sounding[l]))
            np.testing.assert_array_equal(clip.masks[l], want)
            # a sounding object is present in that second
            assert all(plan.objects[i].present[l] for i in np.flatnonzero(plan.sounding[l]))


def test_burst_seconds_hold_the_sounding_objects_and_are_loud():
    found = 0
    for seed in range(40):
        plan = plan_clip(seed)
        for l in np.flatnonzero(plan.burst):
            found += 1
            assert 1 <= l <= 3
            assert plan.sounding[l].any()
            np.testing.assert_array_equal(plan.sounding[l - 1], plan.sounding[l])
            np.testing.assert_array_equal(plan.sounding[l + 1], plan.sounding[l])
            assert -35 <= plan.burst_snr_db[l] <= -30
    assert found >= 10
    # the burst second is ~30 dB louder than its neighbours
    seed = next(s for s in range(40) if plan_clip(s).burst.any())
    clip = generate_clip(seed, size=(32, 32))
    l = int(np.flatnonzero(clip.plan.burst)[0])
    edges = segment_edges(5, clip.audio.size)
    rms = [np.sqrt(np.mean(clip.audio[edges[k]:edges[k + 1]] ** 2)) for k in range(5)]
    assert rms[l] > 10 * max(rms[l - 1], rms[l + 1])


def test_every_kind_looks_and_sounds_different():
    assert len({k.shape for k in KINDS}) == len(KINDS)
    assert len({k.sound for k in KINDS}) == len(KINDS)
    assert len({k.color for k in KINDS}) == len(KINDS)
    rng = np.random.default_rng(0)
    spectra = []
    for k in KINDS:
        x = kind_sound(k.sound, SAMPLE_RATE, rng)
        assert np.isclose(np.sqrt(np.mean(x**2)), 1.0, rtol=1e-6)
        s = np.abs(np.fft.rfft(x))[:8000]
        spectra.append(s / np.linalg.norm(s))
    sim = np.array(spectra) @ np.array(spectra).T
    assert (sim[~np.eye(len(KINDS), dtype=bool)] < 0.9).all()


def test_sounding_mask_empty_when_nothing_sounds():
    plan = plan_clip(3)
    plan.sounding[:] = False
    _, labels = render_frame(plan, 0.9, (32, 32))
    assert not sounding_mask(plan, labels, 0).any()


def test_data_and_metrics_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys, avs_engine.metrics, avs_engine.data, avs_engine.data.video; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
