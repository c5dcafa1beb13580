"""INT8 graphs vs ONNX Runtime FP32 vs PyTorch FP32 on this CPU, per stage and whole clip, in one run
(writes benchmarks/int8_speed.md and .json).

Routes: ``torch fp32`` (the reference model, eager, ``TorchRunner``), ``ort fp32`` and
``ort int8`` (``OnnxRuntimeRunner`` on the FP32 and the INT8 graph set of one export).
Each rep is one generated clip (validation seed range) of T seconds; within a rep the
three routes run one after the other, in an order that rotates from rep to rep, so
that load from other jobs on the machine falls on all of them. One warm-up run per
route (a 1-second clip) is not timed. Reported: median over the reps of each stage's
seconds (the runner's own stage clock) and of the whole clip, the ratios, and the
load average before and after each section. The per-frame mask IoU of ``ort int8``
against ``ort fp32`` (and of ``ort fp32`` against ``torch fp32``) on the same clips
is reported too.

    python benchmarks/int8_speed.py --model demo=DIR --model vit_b=DIR --threads 2 --threads 1 --reps demo=15 --reps vit_b=2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from avs_engine.artifacts.graph_manifest import read_manifest
from avs_engine.artifacts.spec import STAGE_ORDER
from avs_engine.backends.onnxruntime_backend import OnnxRuntimeRunner
from avs_engine.checks.compare import mask_iou
from avs_engine.io.postprocess import logits_to_masks

ROUTES = ("torch fp32", "ort fp32", "ort int8")


def torch_runner(model: str, graphs: Path):
    from avs_engine.backends.torch_backend import TorchRunner

    ck = read_manifest(graphs, check_files=False).checkpoint
    if "random_seed" in ck:
        return TorchRunner(config=model, seed=int(ck["random_seed"]))
    from avs_engine.models import DEMO_WEIGHTS

    return TorchRunner(weights=DEMO_WEIGHTS)


def clips(img_size: int, n: int, T: int) -> list[dict[str, np.ndarray]]:
    from avs_engine.data import prepared_generated

    data = prepared_generated("val", n, img_size, None, T)
    return [{"image": data.image_input(i), "log_mel": data.log_mel_input(i)} for i in range(n)]


def section(model: str, graphs: Path, threads: int, reps: int, T: int, say) -> dict:
    import torch

    torch.set_num_threads(threads)
    load_start = os.getloadavg()
    runners = {"torch fp32": torch_runner(model, graphs),
               "ort fp32": OnnxRuntimeRunner(graphs, precision="fp32", threads=threads),
               "ort int8": OnnxRuntimeRunner(graphs, precision="int8", threads=threads)}
    for r in runners.values():
        r.activate()
    cfg = runners["ort fp32"].config
    S, out = cfg.encoder.img_size, cfg.output_size
    data = clips(S, reps, T)
    warm = {k: v[:1] for k, v in data[0].items()}
    for name, r in runners.items():
        t0 = time.perf_counter()
        r.run_clip(warm["image"], warm["log_mel"])
        say(f"  {model} {threads} thr warm-up {name}: {time.perf_counter() - t0:.2f} s (1 frame)")
    times = {name: {s: [] for s in (*STAGE_ORDER, "clip")} for name in ROUTES}
    iou_int8, iou_ort = [], []
    for i, clip in enumerate(data):
        order = ROUTES[i % 3:] + ROUTES[:i % 3]
        logits = {}
        for name in order:
            r = runners[name]
            clock = r.stage_clock()
            t0 = time.perf_counter()
            logits[name] = r.run_clip(clip["image"], clip["log_mel"], clock)
            wall = time.perf_counter() - t0
            for s, sec in clock.seconds().items():
                times[name][s].append(sec)
            times[name]["clip"].append(wall)
            say(f"  {model} {threads} thr rep {i + 1}/{reps} {name}: {wall:.2f} s")
        m = {k: logits_to_masks(v, (out, out), mid=S) for k, v in logits.items()}
        iou_int8.append(mask_iou(m["ort int8"], m["ort fp32"]))
        iou_ort.append(mask_iou(m["ort fp32"], m["torch fp32"]))
    stage_precision = runners["ort int8"].stage_precision
    description = runners["ort int8"].description
    for r in runners.values():
        r.deactivate()
    med = {name: {s: float(np.median(v)) for s, v in st.items()} for name, st in times.items()}
    i8, o32 = np.concatenate(iou_int8), np.concatenate(iou_ort)
    return {
        "model": model, "threads": threads, "T": T, "reps": reps, "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in os.getloadavg()], "median_s": med,
        "all_s": {name: {s: [round(x, 4) for x in v] for s, v in st.items()} for name, st in times.items()},
        "int8_vs_ort_fp32": {s: med["ort fp32"][s] / med["ort int8"][s] for s in med["ort int8"]},
        "int8_vs_torch_fp32": {s: med["torch fp32"][s] / med["ort int8"][s] for s in med["ort int8"]},
        "ort_fp32_vs_torch_fp32": {s: med["torch fp32"][s] / med["ort fp32"][s] for s in med["ort int8"]},
        "mask_iou_int8_vs_ort_fp32": {"median": float(np.median(i8)), "p5": float(np.percentile(i8, 5)), "min": float(i8.min()),
                                      "frames": int(i8.size)},
        "mask_iou_ort_fp32_vs_torch_fp32": {"median": float(np.median(o32)), "min": float(o32.min())},
        "int8_stages": stage_precision, "int8_runner": description,
    }


def write_md(doc: dict, path: Path) -> None:
    lines = ["# INT8 vs ONNX Runtime FP32 vs PyTorch FP32 on this CPU", "",
             f"Written by `benchmarks/int8_speed.py` on {doc['date']}. Machine: {doc['machine']} (shared with other jobs; "
             f"load averages per section below). Python {doc['versions']['python']}, torch {doc['versions']['torch']}, "
             f"onnxruntime {doc['versions']['onnxruntime']}.", "",
             "Each rep is one generated clip (validation seeds) run by the three routes one after the other, the order rotating "
             "from rep to rep; medians over the reps (seconds; stages from the runner's own stage clock, the clip from a wall "
             "clock around `run_clip`). One untimed warm-up run per route. Speed-up = the other route's time / INT8's time.", ""]
    for s in doc["sections"]:
        lines += [f"## {s['model']}, {s['threads']} thread(s), T = {s['T']}, {s['reps']} reps", "",
                  f"Load average (1/5/15 min) at start {s['load_start']}, at end {s['load_end']}. INT8 set: {s['int8_runner']}.", "",
                  "| stage | PyTorch FP32 (s) | ORT FP32 (s) | ORT INT8 (s) | INT8 vs ORT FP32 | INT8 vs PyTorch FP32 | ORT FP32 vs PyTorch |",
                  "|---|---|---|---|---|---|---|"]
        for st in (*STAGE_ORDER, "clip"):
            m = s["median_s"]
            label = "whole clip" if st == "clip" else f"{st} ({'int8' if s['int8_stages'][st].startswith('int8') else 'fp32'} in the set)"
            lines.append(f"| {label} | {m['torch fp32'][st]:.4f} | {m['ort fp32'][st]:.4f} | {m['ort int8'][st]:.4f} | "
                         f"{s['int8_vs_ort_fp32'][st]:.2f}x | {s['int8_vs_torch_fp32'][st]:.2f}x | {s['ort_fp32_vs_torch_fp32'][st]:.2f}x |")
        iou = s["mask_iou_int8_vs_ort_fp32"]
        lines += ["", f"Per-frame mask IoU, INT8 vs ORT FP32 on these {iou['frames']} frames: median {iou['median']:.4f}, "
                  f"5th percentile {iou['p5']:.4f}, min {iou['min']:.4f} (ORT FP32 vs PyTorch FP32: median "
                  f"{s['mask_iou_ort_fp32_vs_torch_fp32']['median']:.4f}, min {s['mask_iou_ort_fp32_vs_torch_fp32']['min']:.4f}).", ""]
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="NAME=DIR: a preset/model name and its fp32+int8 export")
    ap.add_argument("--threads", type=int, action="append", required=True)
    ap.add_argument("--reps", action="append", default=[], help="NAME=N (default 10)")
    ap.add_argument("-T", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("int8_speed"))
    a = ap.parse_args()
    import onnxruntime
    import torch

    from avs_engine.bench.machine import cpu_model

    reps = {k: int(v) for k, v in (x.split("=") for x in a.reps)}
    doc = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": f"{cpu_model()}, {os.cpu_count()} logical CPUs, {platform.machine()}",
           "versions": {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
           "sections": []}
    say = lambda m: print(m, flush=True)  # noqa: E731
    for spec in a.model:
        name, graphs = spec.split("=", 1)
        for threads in a.threads:
            doc["sections"].append(section(name, Path(graphs), threads, reps.get(name, 10), a.T, say))
            a.out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
            write_md(doc, a.out.with_suffix(".md"))
    say(f"wrote {a.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
