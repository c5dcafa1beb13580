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
give the activations a trained model sees, which random inputs do not.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..artifacts.profiles import CPU_SESSION_MEMORY_OPTIONS
from ..artifacts.spec import STAGE_ORDER, STAGES
from ..checks.compare import mask_iou, rel_l2
from ..io.postprocess import logits_to_masks

Feeds = dict[str, np.ndarray]


def generated_clips(img_size: int, n: int, T: int, split: str = "val") -> list[Feeds]:
    """``n`` generated clips of ``T`` seconds as network inputs: image float32 [T,3,S,S], log_mel [T,1,96,64].

    ``split``: the generator's seed range (``train`` for calibration, ``val`` for checks;
    the held-out ``test`` range is left for scoring)."""
    from ..data import prepared_generated

    data = prepared_generated(split, n, img_size, None, T)
    return [{"image": data.image_input(i), "log_mel": data.log_mel_input(i)} for i in range(len(data))]


def session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for key, value in CPU_SESSION_MEMORY_OPTIONS.items():  # the backend's memory planning
        setattr(options, key, value)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_stage(sess, stage: str, values: Mapping[str, np.ndarray], encoder_batch: int = 1 << 30) -> Feeds:
    """One stage on ``values`` (a dict holding at least its inputs); the encoder ``encoder_batch`` frames per call."""
    names = STAGES[stage].output_names
    feeds = {n: np.ascontiguousarray(values[n], np.float32) for n in STAGES[stage].input_names}
    T = len(next(iter(feeds.values())))
    if stage != "image_encoder" or T <= encoder_batch:
        return dict(zip(names, sess.run(list(names), feeds)))
    parts = [sess.run(list(names), {k: v[i:i + encoder_batch] for k, v in feeds.items()})[0] for i in range(0, T, encoder_batch)]
    return {names[0]: np.concatenate(parts)}


def run_chain(sessions: Mapping[str, object], clip: Mapping[str, np.ndarray], encoder_batch: int = 1 << 30,
              start: str = STAGE_ORDER[0]) -> Feeds:
    """The four stages from ``start`` on; ``clip`` holds image and log_mel (and the earlier stages' outputs
    when ``start`` is later). Returns every value of the chain."""
    values = dict(clip)
    for stage in STAGE_ORDER[STAGE_ORDER.index(start):]:
        values.update(run_stage(sessions[stage], stage, values, encoder_batch))
    return values


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


def reference_chains(fp32: Mapping[str, object], clips: Sequence[Feeds], encoder_batch: int = 1 << 30) -> list[Feeds]:
    """The FP32 chain's values on each clip (stage inputs, outputs and logits)."""
    return [run_chain(fp32, c, encoder_batch) for c in clips]


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


def stage_inputs(refs: Sequence[Feeds], stage: str) -> list[Feeds]:
    """The stage's inputs in each FP32 chain (calibration data for static quantization), one frame
    per dict for the encoder (frames are independent; a whole clip of 1024x1024 frames is a lot to hold)."""
    names = STAGES[stage].input_names
    if stage != "image_encoder":
        return [{n: r[n] for n in names} for r in refs]
    return [{n: r[n][t:t + 1] for n in names} for r in refs for t in range(len(r["image"]))]
