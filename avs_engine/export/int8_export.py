"""The INT8 graph set: quantize each FP32 graph by its plan, check it, keep FP32 where it misses the bar.

For every stage (:data:`avs_engine.export.int8.PLANS`):

* a plan of ``fp32`` keeps the FP32 graph, with the plan's reason;
* otherwise the INT8 graph is written to ``OUT/int8/<stage>.onnx`` and handed
  to the check the caller gives (the checks package's ``Int8Check``:
  the chain with it swapped in against FP32, by mask IoU): when the check does
  not pass, the file is removed and the stage runs its FP32 graph.

Calibration clips (for static plans) are handed in too: the export itself
never generates data nor compares numbers.

Either way the manifest's ``int8`` set lists all four stages; each entry's
``quantization`` says what the stage computes in (``computes``: int8 or fp32),
what was quantized, what stayed float32 and why, and the check's numbers.
One progress line per stage says the same.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..artifacts.spec import STAGE_ORDER
from .int8 import PLANS, Int8Plan, quantize_graph
from .ort_chain import Feeds, reference_chains, session, stage_inputs
# What the tool never quantizes here (no integer kernel, or measured to cost accuracy): said once per graph.
ALWAYS_FP32 = ("LayerNormalization", "Softmax", "Gelu", "ReduceMean", "Einsum (folded attention products)")


def build_int8(
    out: Path,
    fp32_paths: Mapping[str, Path],
    config,
    *,
    calibration: Sequence[Feeds],
    check: Callable,
    plans: Mapping[str, Int8Plan] = PLANS,
    threads: int | None = None,
    progress: Callable[[str], None] = lambda msg: None,
) -> tuple[dict[str, Path], dict[str, dict]]:
    """Write the INT8 graphs under ``out/int8``. ``calibration``: clips (image, log_mel) whose FP32 chain
    calibrates the static plans; ``check(stage, int8_session, fp32_sessions)``: an object with ``passed``,
    ``min_iou``, ``to_dict()`` and the figures of the checks package's ``StageCheck``.
    Returns (stage -> the graph file the int8 set runs, stage -> its ``quantization`` record for the manifest)."""
    from ..artifacts.profiles import cpu_encoder_batch

    t0 = time.perf_counter()
    fp32 = {s: session(fp32_paths[s], threads) for s in STAGE_ORDER}
    calib = None
    if any(plans[s].method == "static" for s in STAGE_ORDER):
        progress(f"int8: FP32 chain on {len(calibration)} calibration clip(s) ...")
        calib = reference_chains(fp32, calibration, cpu_encoder_batch(config))
    progress(f"int8: ready in {time.perf_counter() - t0:.0f} s; quantizing and checking each graph against FP32")

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
            result = check(stage, session(dst, threads), fp32)
            record["check"] = result.to_dict()
            what = ", ".join(f"{k} {v}" for k, v in sel.quantized_by_type.items())
            numbers = (f"rel L2 {max(result.rel_l2.values()):.2g}, mask IoU vs fp32 median {result.iou_median:.4f} "
                       f"(p5 {result.iou_p5:.4f}, {result.frames} frames), {result.speedup:.2f}x fp32 here")
            if result.passed:
                record.update(computes="int8", reason=plan.why)
                files[stage] = dst
                progress(f"[{i}/{n}] int8 {stage}: int8 ({what} quantized); {numbers} in {time.perf_counter() - t1:.0f} s")
            else:
                for old in dst.parent.glob(dst.name + "*"):
                    old.unlink()
                record.update(computes="fp32", reason=f"missed the bar: mask IoU median {result.iou_median:.4f} < {result.min_iou}")
                files[stage] = fp32_paths[stage]
                progress(f"[{i}/{n}] int8 {stage}: stays fp32, {record['reason']} ({numbers})")
        records[stage] = record
    folder = out / "int8"
    if folder.is_dir() and not any(folder.iterdir()):  # every stage stayed fp32
        folder.rmdir()
    return files, records
