"""postprocess: bilinear upsampling against torch, logits -> masks, mask stats."""

import numpy as np
import pytest

from avs_engine.errors import ShapeError
from avs_engine.io.postprocess import logits_to_masks, mask_stats, upsample_bilinear

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _torch_up(x, size):
    return F.interpolate(torch.from_numpy(x), size=size, mode="bilinear", align_corners=False).numpy()


@pytest.mark.parametrize("src,dst", [
    ((16, 16), (64, 64)),
    ((64, 64), (1024, 1024)),
    ((256, 256), (96, 160)),     # shrink: no antialias in either
    ((1024, 1024), (224, 224)),
    ((7, 5), (13, 29)),
    ((9, 31), (9, 4)),           # one axis unchanged
    ((1, 1), (3, 4)),
])
def test_upsample_matches_torch(src, dst):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, *src)).astype(np.float32) * 10
    ref = _torch_up(x, dst)
    out = upsample_bilinear(x, dst)
    assert out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def _torch_masks(logits, size, mid):
    x = torch.from_numpy(logits)
    x = F.interpolate(x, (mid, mid), mode="bilinear", align_corners=False)
    x = F.interpolate(x, size, mode="bilinear", align_corners=False)
    return (x[:, 0] > 0).numpy()


def test_logits_to_masks_matches_torch_two_steps():
    rng = np.random.default_rng(1)
    # Smooth logits with clear sign regions plus noise, like a decoder's.
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    base = np.stack([np.sin(6 * xx + k) * np.cos(4 * yy) for k in range(3)])[:, None]
    logits = (base * 5 + rng.standard_normal(base.shape) * 0.3).astype(np.float32)
    for size in [(96, 160), (224, 224), (361, 641)]:
        ref = _torch_masks(logits, size, mid=256)
        out = logits_to_masks(logits, size, mid=256)
        assert out.shape == (3, *size) and out.dtype == bool
        # Pixels whose logit is within float rounding of 0 may flip.
        assert (out != ref).mean() < 1e-4


def test_logits_to_masks_without_mid_step():
    logits = np.zeros((1, 1, 4, 4), np.float32)
    logits[0, 0, :, 2:] = 1.0
    m = logits_to_masks(logits, (8, 8), mid=0)
    # Output column 3 samples input x = 1.25 (logit 0.25): the edge moves left of 4.
    assert m[0, :, :3].sum() == 0 and m[0, :, 3:].all()


def test_logits_to_masks_rejects_bad_shape():
    with pytest.raises(ShapeError):
        logits_to_masks(np.zeros((2, 3, 8, 8), np.float32), (4, 4))


def test_mask_stats():
    m = np.zeros((10, 20), bool)
    assert mask_stats(m) == {"area_fraction": 0.0, "bbox": None}
    m[2:5, 3:9] = True
    s = mask_stats(m)
    assert s["bbox"] == [3, 2, 9, 5]
    assert s["area_fraction"] == pytest.approx(18 / 200)
    x0, y0, x1, y1 = s["bbox"]
    assert m[y0:y1, x0:x1].sum() == m.sum()
    assert mask_stats(np.ones((3, 4), bool)) == {"area_fraction": 1.0, "bbox": [0, 0, 4, 3]}
    with pytest.raises(ShapeError):
        mask_stats(np.zeros((2, 3, 4), bool))
