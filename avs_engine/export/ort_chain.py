"""The four graphs chained on ONNX Runtime's CPU provider, on host arrays: what the INT8 export calibrates on.

Used by the INT8 export (stage inputs of the FP32 chain, for static
quantization) and by its check against FP32 (``int8_check`` in the checks package).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..artifacts.profiles import CPU_SESSION_MEMORY_OPTIONS
from ..artifacts.spec import STAGE_ORDER, STAGES

Feeds = dict[str, np.ndarray]


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


def reference_chains(fp32: Mapping[str, object], clips: Sequence[Feeds], encoder_batch: int = 1 << 30) -> list[Feeds]:
    """The FP32 chain's values on each clip (stage inputs, outputs and logits)."""
    return [run_chain(fp32, c, encoder_batch) for c in clips]


def stage_inputs(refs: Sequence[Feeds], stage: str) -> list[Feeds]:
    """The stage's inputs in each FP32 chain (calibration data for static quantization), one frame
    per dict for the encoder (frames are independent; a whole clip of 1024x1024 frames is a lot to hold)."""
    names = STAGES[stage].input_names
    if stage != "image_encoder":
        return [{n: r[n] for n in names} for r in refs]
    return [{n: r[n][t:t + 1] for n in names} for r in refs for t in range(len(r["image"]))]
