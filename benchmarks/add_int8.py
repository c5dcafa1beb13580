"""Add the INT8 set to an existing FP32 export for a measurement.

Checked, this is ``avs-export int8 <folder>`` (``avs_engine.export.int8_add``: the same check, the same bar):

    python benchmarks/add_int8.py <avs-export onnx folder> --clips 1 -T 2

``--no-check`` (measurement only): every graph whose plan quantizes is written in INT8 without
the export-time check, its manifest record saying so, so that speed and mask agreement can be
measured on a whole run where the check's sample said no (random weights put many logits near 0).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from avs_engine.artifacts.graph_manifest import read_manifest
from avs_engine.artifacts.spec import STAGE_ORDER
from avs_engine.export.int8 import PLANS, quantize_graph
from avs_engine.checks.int8_check import DEFAULT_MIN_IOU, int8_inputs
from avs_engine.export.graph_entries import int8_entries
from avs_engine.export.int8_add import add_int8_set


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder", type=Path)
    ap.add_argument("--clips", type=int, default=1)
    ap.add_argument("-T", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-check", action="store_true")
    a = ap.parse_args()
    manifest = read_manifest(a.folder, check_hashes=False)
    config = manifest.model_config()
    fp32 = {s: manifest.graph_path("fp32", s) for s in STAGE_ORDER}
    t0 = time.perf_counter()
    if a.no_check:
        files, records = quantize_unchecked(a.folder, fp32)
        manifest.graphs["int8"] = int8_entries(a.folder, files, records)
        manifest.write(a.folder)
    else:
        inputs = int8_inputs(config, clips=a.clips, T=a.T, min_iou=DEFAULT_MIN_IOU)
        manifest = add_int8_set(a.folder, calibration=inputs["int8_calibration"], check=inputs["int8_check"],
                                threads=a.threads, progress=print)
    print(f"int8 set written in {time.perf_counter() - t0:.0f} s: {manifest.path}")


def quantize_unchecked(folder: Path, fp32: dict) -> tuple[dict, dict]:
    files, records = {}, {}
    for stage in STAGE_ORDER:
        plan = PLANS[stage]
        dst = folder / "int8" / f"{stage}.onnx"
        t0 = time.perf_counter()
        sel = quantize_graph(fp32[stage], dst, plan)
        record = {"plan": plan.to_dict(), **sel.summary()}
        if sel.quantize:
            files[stage] = dst
            record.update(computes="int8", reason="written without the export-time check (benchmarks/add_int8.py --no-check)")
        else:
            files[stage] = fp32[stage]
            record.update(computes="fp32", reason=plan.why or "nothing to quantize")
        records[stage] = record
        print(f"{stage}: {record['computes']} in {time.perf_counter() - t0:.0f} s")
    return files, records


if __name__ == "__main__":
    main()
