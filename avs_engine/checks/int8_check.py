"""Is an INT8 graph good enough? Each one against its FP32 graph, on generated clips (numpy + ONNX Runtime).

For one stage's INT8 graph, on every clip:

* the stage's outputs against the FP32 graph's, both fed the FP32 chain's
  inputs: relative L2 error ``||y - y32|| / ||y32||``;
* the whole chain with that one graph swapped in (the other three FP32):
  per-frame IoU of its masks (logit > 0, at the model's output size) against
  the FP32 chain's masks;
* the stage's time in both precisions (median over the clips; a hint, not a bar:
  export machines differ from run machines).

Clips come from the generator (:mod:`avs_engine.data`): real frames and sounds
give the activations a trained model sees, which random inputs do not. The
INT8 export (:func:`avs_engine.export.int8_export.build_int8`) is handed the
calibration clips and the check (:func:`int8_inputs`); it does not import either.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np

from ..artifacts.profiles import cpu_encoder_batch
from ..artifacts.spec import STAGE_ORDER
from ..export.ort_chain import Feeds, reference_chains, run_chain, run_stage
from ..io.postprocess import logits_to_masks
from .compare import mask_iou, rel_l2

DEFAULT_MIN_IOU = 0.98  # median per-frame mask IoU against the FP32 chain
DEFAULT_CLIPS = 2


def generated_clips(img_size: int, n: int, T: int, split: str = "val") -> list[Feeds]:
    """``n`` generated clips of ``T`` seconds as network inputs: image float32 [T,3,S,S], log_mel [T,1,96,64].

    ``split``: the generator's seed range (``train`` for calibration, ``val`` for checks;
    the held-out ``test`` range is left for scoring)."""
    from ..data import prepared_generated

    data = prepared_generated(split, n, img_size, None, T)
    return [{"image": data.image_input(i), "log_mel": data.log_mel_input(i)} for i in range(len(data))]


@dataclass
class StageCheck:
    """One INT8 graph against its FP32 graph (see the module docstring)."""

    stage: str
    frames: int
    rel_l2: dict[str, float] = field(default_factory=dict)  # output -> largest over the clips
    iou_median: float = 1.0
    iou_p5: float = 1.0
    iou_min: float = 1.0
    seconds_fp32: float = 0.0
    seconds_int8: float = 0.0
    min_iou: float = DEFAULT_MIN_IOU  # the bar: median per-frame mask IoU against FP32

    @property
    def passed(self) -> bool:
        return self.iou_median >= self.min_iou

    @property
    def speedup(self) -> float:
        return self.seconds_fp32 / self.seconds_int8 if self.seconds_int8 > 0 else float("nan")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["speedup"] = round(self.speedup, 3)
        for k in ("iou_median", "iou_p5", "iou_min"):
            d[k] = round(d[k], 5)
        d["seconds_fp32"], d["seconds_int8"] = round(self.seconds_fp32, 4), round(self.seconds_int8, 4)
        d["rel_l2"] = {k: float(f"{v:.3g}") for k, v in self.rel_l2.items()}
        return d


def check_stage(stage: str, int8_sess, fp32: Mapping[str, object], refs: Sequence[Feeds], out_size: int, img_size: int,
                encoder_batch: int = 1 << 30, fp32_seconds: float | None = None) -> StageCheck:
    """``int8_sess`` (the INT8 graph of ``stage``) against the FP32 sessions ``fp32``, on the FP32 chains ``refs``.
    ``fp32_seconds``: the FP32 stage's time when already measured (the FP32 graph is then not run again)."""
    check = StageCheck(stage, frames=0)
    ious, t32, t8 = [], [], []
    for ref in refs:
        if fp32_seconds is None:
            t0 = time.perf_counter()
            run_stage(fp32[stage], stage, ref, encoder_batch)  # timed again here: the chain ran it cold
            t32.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        got = run_stage(int8_sess, stage, ref, encoder_batch)
        t8.append(time.perf_counter() - t0)
        for name, y in got.items():
            check.rel_l2[name] = max(check.rel_l2.get(name, 0.0), rel_l2(y, ref[name]))
        rest = STAGE_ORDER[STAGE_ORDER.index(stage) + 1:]
        values = {**ref, **got}
        if rest:
            values = run_chain(fp32, values, encoder_batch, start=rest[0])
        size = (out_size, out_size)
        ious.append(mask_iou(logits_to_masks(values["logits"], size, mid=img_size),
                             logits_to_masks(ref["logits"], size, mid=img_size)))
    iou = np.concatenate(ious)
    check.frames = int(iou.size)
    check.iou_median, check.iou_p5, check.iou_min = float(np.median(iou)), float(np.percentile(iou, 5)), float(iou.min())
    check.seconds_fp32 = float(np.median(t32)) if fp32_seconds is None else fp32_seconds
    check.seconds_int8 = float(np.median(t8))
    return check


class Int8Check:
    """The check :func:`~avs_engine.export.int8_export.build_int8` calls for each INT8 graph:
    ``check(stage, int8_session, fp32_sessions) -> StageCheck``. The FP32 chain on ``clips``
    is computed once, at the first call."""

    def __init__(self, clips: Sequence[Feeds], config, min_iou: float = DEFAULT_MIN_IOU) -> None:
        self.clips, self.config, self.min_iou = list(clips), config, min_iou
        self._refs: list[Feeds] | None = None

    def __call__(self, stage: str, int8_sess, fp32: Mapping[str, object]) -> StageCheck:
        eb = cpu_encoder_batch(self.config)
        if self._refs is None:
            self._refs = reference_chains(fp32, self.clips, eb)
        check = check_stage(stage, int8_sess, fp32, self._refs, self.config.output_size, self.config.encoder.img_size, eb)
        check.min_iou = self.min_iou
        return check


def int8_inputs(config, clips: int = DEFAULT_CLIPS, T: int = 2, min_iou: float = DEFAULT_MIN_IOU) -> dict:
    """What the INT8 export is handed: generated calibration clips (the generator's train seeds) and the
    check on generated validation clips; keyword arguments of :func:`avs_engine.export.onnx_export.export_onnx`."""
    S = config.encoder.img_size
    return {"int8_calibration": generated_clips(S, clips, T, "train"),
            "int8_check": Int8Check(generated_clips(S, clips, T, "val"), config, min_iou)}
