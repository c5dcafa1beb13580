"""The INT8 graphs' cost in accuracy on a trained model (writes benchmarks/int8_accuracy.md and .json).

The bundled demo model, exported as fp32 + int8 (``avs-export onnx --precision fp32,int8``),
scored on the held-out generated test split (the 300 clips of its reported numbers,
``avs-eval --generated 300``) with AVSBench's metrics, once with the FP32 graphs and once
with the INT8 set, both on ONNX Runtime CPU: mIoU and F overall and on the noise-burst
seconds, the paired difference with a bootstrap interval over videos, and the per-frame
mask IoU of INT8 against FP32 (masks at 224x224, logit > 0).

    python benchmarks/int8_accuracy.py --graphs DIR --clips 300 --threads 2
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

from avs_engine.backends.onnxruntime_backend import OnnxRuntimeRunner
from avs_engine.checks.compare import mask_iou
from avs_engine.data import open_split
from avs_engine.train.evaluate import evaluate_split, runner_predictor


def bootstrap(a: np.ndarray, b: np.ndarray, n: int = 5000, seed: int = 0) -> tuple[float, float]:
    """95% interval of mean(a - b) over videos (paired resampling)."""
    rng = np.random.default_rng(seed)
    d = a - b
    idx = rng.integers(0, len(d), (n, len(d)))
    means = d[idx].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--graphs", type=Path, required=True, help="an fp32+int8 export of the demo model")
    ap.add_argument("--clips", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("int8_accuracy"))
    a = ap.parse_args()
    import onnxruntime

    res, masks, runners = {}, {}, {}
    data = None
    for p in ("fp32", "int8"):
        with OnnxRuntimeRunner(a.graphs, precision=p, threads=a.threads) as r:
            runners[p] = {"description": r.description, "stage_precision": r.stage_precision}
            if data is None:
                data = open_split("test", r.config.encoder.img_size, generated=a.clips, cache_dir=a.cache_dir)
            predict = runner_predictor(r)
            kept: list[np.ndarray] = []

            def keep(image, log_mel, predict=predict, kept=kept):
                logits = predict(image, log_mel)  # [T,224,224]
                kept.append(logits > 0)
                return logits

            t0 = time.perf_counter()
            res[p] = evaluate_split(data, keep)
            res[p]["seconds"] = time.perf_counter() - t0
            masks[p] = kept
            print(f"{p}: mIoU {res[p]['all']['miou']:.4f} F {res[p]['all']['f_score']:.4f} bursts {res[p]['burst']['miou']:.4f} "
                  f"{res[p]['burst']['f_score']:.4f} ({res[p]['seconds']:.0f} s)", flush=True)
    valid = [np.asarray(data.mask_valid[i], bool) for i in range(len(data))]
    iou = np.concatenate([mask_iou(m8[v], m32[v]) for m8, m32, v in zip(masks["int8"], masks["fp32"], valid)])
    burst = np.concatenate([np.asarray(data.burst[i], bool)[valid[i]] for i in range(len(data))])
    pv = {p: res[p]["per_video"] for p in res}
    diffs = {}
    for key, label in (("miou", "mIoU all"), ("f_score", "F all"), ("burst_miou", "mIoU bursts"), ("burst_f_score", "F bursts")):
        rows = [(x[key], y[key]) for x, y in zip(pv["int8"], pv["fp32"]) if key in x and key in y]
        a8, a32 = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
        diffs[label] = {"int8_minus_fp32": float(a8.mean() - a32.mean()), "ci95": bootstrap(a8, a32), "videos": len(rows)}
    doc = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "load_end": [round(x, 2) for x in os.getloadavg()],
        "versions": {"python": platform.python_version(), "onnxruntime": onnxruntime.__version__},
        "data": f"{a.clips} generated test clips (held-out seed range), {int(sum(v.sum() for v in valid))} frames, {int(burst.sum())} noise-burst frames",
        "runners": runners,
        "metrics": {p: {"all": res[p]["all"], "burst": res[p]["burst"], "seconds": round(res[p]["seconds"], 1)} for p in res},
        "paired_difference": diffs,
        "mask_iou_int8_vs_fp32": {
            "all": {"median": float(np.median(iou)), "p5": float(np.percentile(iou, 5)), "min": float(iou.min()), "mean": float(iou.mean()),
                    "frames": int(iou.size)},
            "bursts": {"median": float(np.median(iou[burst])), "p5": float(np.percentile(iou[burst], 5)), "frames": int(burst.sum())},
        },
    }
    a.out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    m, d, mi = doc["metrics"], doc["paired_difference"], doc["mask_iou_int8_vs_fp32"]
    lines = [
        "# INT8 graphs on a trained model: the bundled demo model, held-out generated clips", "",
        f"Written by `benchmarks/int8_accuracy.py` on {doc['date']}; onnxruntime {doc['versions']['onnxruntime']}, CPU provider, "
        f"{a.threads} threads. Data: {doc['data']} (the split of `benchmarks/demo_model.md`). AVSBench metrics at 224x224.", "",
        f"FP32: `{runners['fp32']['description']}`. INT8: `{runners['int8']['description']}`.", "",
        "| graphs | mIoU all | F all | mIoU bursts | F bursts |", "|---|---|---|---|---|",
    ]
    for p in ("fp32", "int8"):
        lines.append(f"| {p} | {m[p]['all']['miou']:.4f} | {m[p]['all']['f_score']:.4f} | {m[p]['burst']['miou']:.4f} | {m[p]['burst']['f_score']:.4f} |")
    lines += ["", "INT8 minus FP32, paired over videos (bootstrap, 5000 resamples, 95%):", "",
              "| metric | difference | 95% interval | videos |", "|---|---|---|---|"]
    for k, v in d.items():
        lines.append(f"| {k} | {v['int8_minus_fp32']:+.4f} | [{v['ci95'][0]:+.4f}, {v['ci95'][1]:+.4f}] | {v['videos']} |")
    lines += ["", f"Per-frame mask IoU, INT8 vs FP32: median {mi['all']['median']:.4f}, 5th percentile {mi['all']['p5']:.4f}, "
              f"min {mi['all']['min']:.4f}, mean {mi['all']['mean']:.4f} over {mi['all']['frames']} frames; on the noise-burst "
              f"frames median {mi['bursts']['median']:.4f}, 5th percentile {mi['bursts']['p5']:.4f} ({mi['bursts']['frames']} frames).", ""]
    a.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {a.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
