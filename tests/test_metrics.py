"""AVSBench metrics on hand-worked cases (docs/metrics.md)."""

from __future__ import annotations

import numpy as np
import pytest

from avs_engine.metrics import THRESHOLDS, MetricAccumulator, frame_ious, video_scores

BIG = 20.0  # a logit whose sigmoid is ~1 (> 0.5)


def logit(p):
    p = np.asarray(p, np.float64)
    return np.log(p / (1 - p)).astype(np.float32)


def test_iou_hand_cases():
    gt = np.array([
        [[1, 1], [0, 0]],   # 2 of 4 pixels
        [[0, 0], [0, 0]],   # empty ground truth
        [[0, 0], [0, 0]],   # empty, empty prediction
        [[0, 1], [0, 0]],   # object missed entirely
    ], bool)
    lg = np.array([
        [[BIG, -BIG], [BIG, -BIG]],    # pred {(0,0),(1,0)}: inter 1, union 3
        [[BIG, -BIG], [-BIG, -BIG]],   # 3 of 4 pixels predicted background
        [[-BIG, -BIG], [-BIG, -BIG]],  # all background
        [[-BIG, -BIG], [-BIG, -BIG]],
    ], np.float32)
    ious = frame_ious(lg, gt)
    np.testing.assert_allclose(ious, [1 / 3, 3 / 4, 1.0, 0.0], rtol=1e-6)
    iou, _ = video_scores(lg, gt)
    assert iou == pytest.approx((1 / 3 + 3 / 4 + 1 + 0) / 4, rel=1e-6)


def test_iou_threshold_is_strict_sigmoid_half():
    # logit 0 -> sigmoid 0.5, which is not > 0.5: background
    gt = np.ones((1, 1, 2), bool)
    lg = np.array([[[0.0, 1e-3]]], np.float32)
    np.testing.assert_allclose(frame_ious(lg, gt), [0.5], rtol=1e-6)


def test_thresholds_match_avsbench():
    assert THRESHOLDS.shape == (255,) and THRESHOLDS.dtype == np.float32
    assert THRESHOLDS[0] == 0.0 and THRESHOLDS[-1] == 1.0  # 1 - 1e-10 rounds to 1 in float32
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(THRESHOLDS, torch.linspace(0, 1 - 1e-10, 255).numpy())


def test_f_score_hand_case():
    p = logit([0.9, 0.6, 0.2, 0.2])[None, None]  # [1,1,4]
    a = np.array([[[1, 0, 0, 0]]], bool)
    b = np.array([[[0, 1, 0, 0]]], bool)
    # Frame a alone: threshold in (0.6, 0.9] predicts exactly the object: F = 1.
    assert video_scores(p, a)[1] == pytest.approx(1.0, abs=1e-9)
    # Frames a and b: curve means are 0.3023 (th <= 0.2), 0.5652 (0.2 < th <= 0.6),
    # (1 + 0) / 2 = 0.5 (0.6 < th <= 0.9), 0 above: the max is 1.3*0.5/(0.15+1) = 13/23.
    lg = np.concatenate([p, p, p])
    empty = np.zeros((1, 1, 4), bool)
    gt = np.concatenate([a, b, empty])  # the empty frame is skipped by F
    iou, f = video_scores(lg, gt)
    assert f == pytest.approx(13 / 23, rel=1e-9)
    # IoU (> 0.5 on the sigmoid: pixels 0 and 1): a 1/2, b 1/2, empty frame 2/4
    assert iou == pytest.approx(0.5, rel=1e-6)


def test_all_empty_video_scores_zero_f():
    gt = np.zeros((3, 4, 4), bool)
    lg = np.full((3, 4, 4), -BIG, np.float32)
    iou, f = video_scores(lg, gt)
    assert f == 0.0
    assert iou == pytest.approx(1.0, rel=1e-6)  # a perfect all-background prediction


def test_empty_prediction_on_object_scores_zero_f():
    gt = np.zeros((1, 4, 4), bool)
    gt[0, 0, 0] = True
    lg = np.full((1, 4, 4), -1e4, np.float32)  # sigmoid exactly 0: only threshold 0 predicts
    # threshold 0 predicts all 16 pixels: P = 1/16, R = 1 -> F = 1.3/16 / (0.3/16 + 1)
    assert video_scores(lg, gt)[1] == pytest.approx((1.3 / 16) / (0.3 / 16 + 1), rel=1e-9)


def test_accumulator_means_over_videos():
    acc = MetricAccumulator()
    gt = np.ones((2, 2, 2), bool)
    acc.add("perfect", np.full((2, 2, 2), BIG, np.float32), gt)
    acc.add("missed", np.full((1, 2, 2), -BIG, np.float32), gt[:1])
    s = acc.summary()
    assert s["videos"] == 2 and s["frames"] == 3
    assert s["miou"] == pytest.approx(0.5, rel=1e-6)
    # the missed video: sigmoid(-20) ~ 2e-9 >= threshold 0 only: P = 1, R = 1 at threshold 0
    assert s["f_score"] == pytest.approx(1.0, rel=1e-6)


def test_shape_mismatch_is_an_error():
    from avs_engine.errors import ShapeError

    with pytest.raises(ShapeError):
        video_scores(np.zeros((2, 4, 4)), np.zeros((2, 4, 5), bool))


def test_matches_avsbench_torch_code_on_random_frames():
    """AVSBench's own formulas (utility.py: mask_iou, _eval_pr, Eval_Fmeasure), transcribed in torch."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    lg = rng.normal(0, 3, (5, 24, 24)).astype(np.float32)
    gt = rng.random((5, 24, 24)) < 0.3
    gt[2] = False  # one empty frame
    pred, target = torch.from_numpy(lg), torch.from_numpy(gt).float()

    n_pix = 24 * 24
    no_obj = target.sum(2).sum(1) == 0
    p = (torch.sigmoid(pred) > 0.5).int()
    inter = (p * target).sum(2).sum(1)
    union = torch.max(p, target).sum(2).sum(1)
    inter[no_obj] = ((1 - target) * (1 - p)).sum(2).sum(1)[no_obj]
    union[no_obj] = n_pix
    ref_iou = (torch.sum(inter / (union + 1e-7)) / 5).item()

    prob = torch.sigmoid(pred)
    avg_f, n, score = 0.0, 0, torch.zeros(255)
    for i in range(5):
        if torch.mean(target[i]) == 0.0:
            continue
        th = torch.linspace(0, 1 - 1e-10, 255)
        prec, rec = torch.zeros(255), torch.zeros(255)
        for k in range(255):
            y = (prob[i] >= th[k]).float()
            tp = (y * target[i]).sum()
            prec[k], rec[k] = tp / (y.sum() + 1e-20), tp / (target[i].sum() + 1e-20)
        f = (1 + 0.3) * prec * rec / (0.3 * prec + rec)
        f[f != f] = 0
        avg_f, n = avg_f + f, n + 1
        score = avg_f / n
    ref_f = score.max().item()

    iou, f = video_scores(lg, gt)
    assert iou == pytest.approx(ref_iou, rel=1e-5)
    assert f == pytest.approx(ref_f, rel=1e-5)
