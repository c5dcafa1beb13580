"""The torch backend's precisions on this CPU: vit_b (random weights) on generated clips.

    python -m benchmarks.torch_precision [--clips 2] [--seconds 2] [--threads 2] [--reps 2] [--out benchmarks/torch_precision]

For each precision (float32, bfloat16 and float16 autocast over float32 weights) the whole clip runs
through ``TorchRunner.run_clip``; the runners alternate within each repetition, and the table gives the
median image-encoder and whole-clip seconds per frame. Agreement: per-frame mask IoU (logit > 0 at
224x224) of each low precision against float32, and the relative L2 error of the logits. Also SAM's
own attention in float32 (``attention="sam"``) against the default SDPA form. Writes OUT.json and OUT.md
with the machine, versions, date and load average (``--render``: OUT.md again from OUT.json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

ROUTES = [("float32", "sam"), ("float32", "sdpa"), ("bfloat16", "sdpa"), ("float16", "sdpa")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="vit_b")
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/torch_precision"))
    ap.add_argument("--render", action="store_true", help="only rewrite OUT.md from OUT.json")
    a = ap.parse_args()
    if a.render:
        a.out.with_suffix(".md").write_text(render(json.loads(a.out.with_suffix(".json").read_text())))
        return

    import torch

    from avs_engine.backends.clocks import StageClock
    from avs_engine.backends.torch_backend import TorchRunner
    from avs_engine.bench.machine import machine_info
    from avs_engine.checks.compare import mask_iou, rel_l2
    from avs_engine.data.prepared import generated_samples, prepare
    from avs_engine.io.postprocess import logits_to_masks
    from avs_engine.reference.build import build_model

    torch.set_num_threads(a.threads)
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    base = build_model(a.config, seed=0)
    state = base.state_dict()
    S = base.config.encoder.img_size
    split = prepare(generated_samples("test", a.clips, T=a.seconds), a.clips, S, T=a.seconds)
    clips = [(split.image_input(i), split.log_mel_input(i)) for i in range(a.clips)]

    runners = {}
    for dtype, attention in ROUTES:
        m = build_model(a.config, seed=0)
        m.load_state_dict(state)
        runners[(dtype, attention)] = TorchRunner(model=m, dtype=dtype, attention=attention).activate()

    for r in ROUTES:  # warm-up (allocator, oneDNN kernels), untimed: one frame each
        runners[r].run_clip(clips[0][0][:1], clips[0][1][:1])
    times: dict = {r: {"image_encoder": [], "clip": []} for r in ROUTES}
    logits: dict = {r: [None] * a.clips for r in ROUTES}
    frames = a.seconds
    for rep in range(a.reps):
        for ci, (image, log_mel) in enumerate(clips):
            for r in ROUTES:
                clock = StageClock()
                t0 = time.perf_counter()
                out = runners[r].run_clip(image, log_mel, clock)
                total = time.perf_counter() - t0
                times[r]["clip"].append(total / frames)
                times[r]["image_encoder"].append(clock.seconds()["image_encoder"] / frames)
                logits[r][ci] = out
                print(f"rep {rep} clip {ci} {r[0]}/{r[1]}: {total:.1f} s", flush=True)

    ref = ("float32", "sam")
    rows = []
    for r in ROUTES:
        ious = np.concatenate([mask_iou(logits_to_masks(lg, (224, 224)), logits_to_masks(rl, (224, 224)))
                               for lg, rl in zip(logits[r], logits[ref])])
        rel = statistics.median(rel_l2(lg, rl) for lg, rl in zip(logits[r], logits[ref]))
        rows.append({"precision": r[0], "attention": r[1],
                     "image_encoder_s_per_frame": statistics.median(times[r]["image_encoder"]),
                     "clip_s_per_frame": statistics.median(times[r]["clip"]),
                     "mask_iou_median": float(np.median(ious)), "mask_iou_min": float(ious.min()),
                     "logits_rel_l2": rel, "runner": runners[r].description,
                     "compute_precision": runners[r].stage_precision})
    doc = {"date": started.isoformat(timespec="seconds"), "machine": machine_info(), "torch": torch.__version__,
           "config": a.config, "clips": a.clips, "seconds": a.seconds, "threads": a.threads, "reps": a.reps,
           "load_average_before": load_before, "load_average_after": os.getloadavg(), "reference": "float32 / sam",
           "rows": rows}
    a.out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    a.out.with_suffix(".md").write_text(render(doc))
    print(render(doc))


def render(doc: dict) -> str:
    """The report (OUT.md) from the measurements (OUT.json)."""
    m = doc["machine"]
    rows = doc["rows"]
    ref = rows[0]["image_encoder_s_per_frame"]
    lines = [
        "# The torch backend's precisions on a CPU",
        "",
        f"Written by `benchmarks/torch_precision.py` on {doc['date']}. Machine: {m['cpu']}, {m['cores_usable']} usable "
        f"cores, {m['memory']['value']} GiB; torch {doc['torch']}, {doc['threads']} threads; load average "
        f"{doc['load_average_before'][0]:.2f} before, {doc['load_average_after'][0]:.2f} after.",
        "",
        f"Model: the `{doc['config']}` preset with random weights (seed 0). Data: {doc['clips']} generated test clips of "
        f"{doc['seconds']} s. Each route runs the whole clip through `TorchRunner.run_clip`; routes alternate within "
        f"each of {doc['reps']} repetitions after an untimed warm-up; seconds per frame are medians. Reference: float32 "
        "with SAM's own attention code. Mask IoU: per frame, logit > 0 at 224x224. bfloat16 and float16 are autocast "
        "over float32 weights (the image encoder; LayerNorms and softmax statistics float32; audio, fusion and "
        "decoder float32).",
        "",
        "| precision | encoder attention | image encoder s/frame | speed-up vs float32 SAM | clip s/frame | "
        "mask IoU vs float32 SAM (median, min) | logits rel. L2 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['precision']} | {r['attention']} | {r['image_encoder_s_per_frame']:.2f} | "
                     f"{ref / r['image_encoder_s_per_frame']:.2f}x | {r['clip_s_per_frame']:.2f} | "
                     f"{r['mask_iou_median']:.4f}, {r['mask_iou_min']:.4f} | {r['logits_rel_l2']:.2e} |")
    lines += ["", "What each stage computed in (result.json's `model.compute_precision`):", ""]
    for r in rows[1:]:
        cp = r["compute_precision"]
        lines.append(f"- {r['runner']}: image encoder {cp['image_encoder']}; audio, fusion, mask decoder {cp['fusion']}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
