"""Score a split with AVSBench's metrics (docs/metrics.md), for any predictor.

A predictor maps one video's ``image [T,3,S,S]`` and ``log_mel [T,1,96,64]``
(numpy) to logits at 224x224, ``[T,224,224]``. :func:`runner_predictor`
wraps any backend's runner (numpy upsampling, as the authors: to S, then to
224); :func:`torch_predictor` wraps a model in memory.
Scores: the whole split (frames with a mask) and the noise-burst seconds alone
(generated sets; each video's burst frames count as one video).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..data.avsbench import EVAL_SIZE
from ..metrics import MetricAccumulator

Predictor = Callable[[np.ndarray, np.ndarray], np.ndarray]


def runner_predictor(runner) -> Predictor:
    from ..io.postprocess import upsample_bilinear

    def predict(image: np.ndarray, log_mel: np.ndarray) -> np.ndarray:
        logits = runner.run_clip(image, log_mel)  # [T,1,L,L]
        s = runner.config.encoder.img_size
        x = upsample_bilinear(upsample_bilinear(logits.astype(np.float32), (s, s)), (EVAL_SIZE, EVAL_SIZE))
        return x[:, 0]

    return predict


def torch_predictor(model, device="cpu") -> Predictor:
    import torch

    def predict(image: np.ndarray, log_mel: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            lg = model(torch.from_numpy(image).to(device), torch.from_numpy(log_mel).to(device))
            return model.upsample(lg, (EVAL_SIZE, EVAL_SIZE))[:, 0].float().cpu().numpy()

    return predict


def evaluate_split(split, predict: Predictor, progress: bool = False, limit: int | None = None) -> dict:
    """{"all": {...}, "burst": {...}, "per_video": [...]}: mIoU and F-score of ``split``."""
    acc_all, acc_burst = MetricAccumulator(), MetricAccumulator()
    per_video = []
    n = len(split) if limit is None else min(limit, len(split))
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="eval", unit="video", leave=False)
    for i in it:
        logits = predict(split.image_input(i), split.log_mel_input(i))  # [T,224,224]
        masks = split.masks(i)
        valid = np.asarray(split.mask_valid[i], bool)
        iou, f = acc_all.add(split.names[i], logits[valid], masks[valid])
        rec = {"name": split.names[i], "miou": iou, "f_score": f}
        burst = np.asarray(split.burst[i], bool) & valid
        if burst.any():
            bi, bf = acc_burst.add(split.names[i], logits[burst], masks[burst])
            rec.update({"burst_miou": bi, "burst_f_score": bf, "burst_frames": int(burst.sum())})
        per_video.append(rec)
    return {"all": acc_all.summary(), "burst": acc_burst.summary(), "per_video": per_video}
