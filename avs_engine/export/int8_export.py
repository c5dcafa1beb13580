"""The INT8 graph set: quantize each FP32 graph by its plan, check it, keep FP32 where it misses the bar.

For every stage (:data:`avs_engine.export.int8.PLANS`):

* a plan of ``fp32`` keeps the FP32 graph, with the plan's reason;
* otherwise the INT8 graph is written to ``OUT/int8/<stage>.onnx`` and checked
  against its FP32 graph on generated clips (:mod:`avs_engine.export.int8_check`):
  when the per-frame mask IoU of the chain with it swapped in has a median
  below ``min_iou``, the file is removed and the stage runs its FP32 graph.

Either way the manifest's ``int8`` set lists all four stages; each entry's
``quantization`` says what the stage computes in (``computes``: int8 or fp32),
what was quantized, what stayed float32 and why, and the check's numbers.
One progress line per stage says the same.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Mapping

from ..artifacts.spec import STAGE_ORDER
from .int8 import PLANS, Int8Plan, quantize_graph
from .int8_check import check_stage, generated_clips, reference_chains, session, stage_inputs

DEFAULT_MIN_IOU = 0.98  # median per-frame mask IoU against the FP32 chain
DEFAULT_CLIPS = 2
# What the tool never quantizes here (no integer kernel, or measured to cost accuracy): said once per graph.
ALWAYS_FP32 = ("LayerNormalization", "Softmax", "Gelu", "ReduceMean", "Einsum (folded attention products)")


def build_int8(
    out: Path,
    fp32_paths: Mapping[str, Path],
    config,
    *,
    plans: Mapping[str, Int8Plan] = PLANS,
    clips: int = DEFAULT_CLIPS,
    T: int = 2,
    min_iou: float = DEFAULT_MIN_IOU,
    threads: int | None = None,
    progress: Callable[[str], None] = lambda msg: None,
) -> tuple[dict[str, Path], dict[str, dict]]:
    """Write the INT8 graphs under ``out/int8``. Returns (stage -> the graph file the int8 set runs,
    stage -> its ``quantization`` record for the manifest)."""
    from ..artifacts.profiles import cpu_encoder_batch

    S, out_size = config.encoder.img_size, config.output_size
    eb = cpu_encoder_batch(config)
    t0 = time.perf_counter()
    progress(f"int8: FP32 reference chain on {clips} generated clip(s) x T={T} ...")
    fp32 = {s: session(fp32_paths[s], threads) for s in STAGE_ORDER}
    refs = reference_chains(fp32, generated_clips(S, clips, T, "val"), eb)
    calib = None
    if any(plans[s].method == "static" for s in STAGE_ORDER):
        calib = reference_chains(fp32, generated_clips(S, clips, T, "train"), eb)
    progress(f"int8: reference ready in {time.perf_counter() - t0:.0f} s; quantizing and checking each graph "
             f"(bar: median per-frame mask IoU vs FP32 >= {min_iou})")

    files: dict[str, Path] = {}
    records: dict[str, dict] = {}
    n = len(STAGE_ORDER)
    for i, stage in enumerate(STAGE_ORDER, 1):
        t1 = time.perf_counter()
        plan = plans[stage]
        dst = out / "int8" / f"{stage}.onnx"
        for old in dst.parent.glob(dst.name + "*"):
            old.unlink()
        sel = quantize_graph(fp32_paths[stage], dst, plan,
                             calibration=stage_inputs(calib, stage) if plan.method == "static" and calib else None)
        record = {"plan": plan.to_dict(), **sel.summary(), "always_fp32": list(ALWAYS_FP32)}
        if not sel.quantize:
            record.update(computes="fp32", reason=plan.why or "nothing to quantize")
            files[stage] = fp32_paths[stage]
            progress(f"[{i}/{n}] int8 {stage}: stays fp32 ({record['reason']})")
        else:
            check = check_stage(stage, session(dst, threads), fp32, refs, out_size, S, eb)
            record["check"] = {**check.to_dict(), "min_iou": min_iou}
            what = ", ".join(f"{k} {v}" for k, v in sel.quantized_by_type.items())
            numbers = (f"rel L2 {max(check.rel_l2.values()):.2g}, mask IoU vs fp32 median {check.iou_median:.4f} "
                       f"(p5 {check.iou_p5:.4f}, {check.frames} frames), {check.speedup:.2f}x fp32 here")
            if check.iou_median >= min_iou:
                record.update(computes="int8", reason=plan.why)
                files[stage] = dst
                progress(f"[{i}/{n}] int8 {stage}: int8 ({what} quantized); {numbers} in {time.perf_counter() - t1:.0f} s")
            else:
                for old in dst.parent.glob(dst.name + "*"):
                    old.unlink()
                record.update(computes="fp32", reason=f"missed the bar: mask IoU median {check.iou_median:.4f} < {min_iou}")
                files[stage] = fp32_paths[stage]
                progress(f"[{i}/{n}] int8 {stage}: stays fp32, {record['reason']} ({numbers})")
        records[stage] = record
    folder = out / "int8"
    if folder.is_dir() and not any(folder.iterdir()):  # every stage stayed fp32
        folder.rmdir()
    return files, records
