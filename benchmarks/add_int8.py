"""Add the INT8 set to an existing FP32 export (what ``avs-export onnx --precision fp32,int8`` does
after its FP32 step), without exporting the FP32 graphs again: vit_h's FP32 export takes minutes.

Quantizes each FP32 graph by its plan, checks it against the FP32 chain on generated clips
(``avs_engine.export.int8_export.build_int8`` with ``checks.int8_check``: the same check, the same bar) and writes the
``int8`` entries into the folder's manifest.

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
from avs_engine.export.int8_export import build_int8
from avs_engine.export.onnx_export import _entry, external_data_files


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
    else:
        inputs = int8_inputs(config, clips=a.clips, T=a.T, min_iou=DEFAULT_MIN_IOU)
        files, records = build_int8(a.folder, fp32, config, calibration=inputs["int8_calibration"],
                                    check=inputs["int8_check"], threads=a.threads, progress=print)
    manifest.graphs["int8"] = {}
    for stage in STAGE_ORDER:
        f = files[stage]
        listed = [f, *external_data_files(f)]
        entry = _entry(a.folder, stage, "int8", listed)
        entry.quantization = records[stage]
        manifest.graphs["int8"][stage] = entry
    manifest.write(a.folder)
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
