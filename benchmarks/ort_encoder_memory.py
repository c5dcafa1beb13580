"""The image-encoder graph on ONNX Runtime CPU: session options and frames per call, by time and peak RSS.

Each (session options, frames per call) runs in a fresh process: load the FP32
(or INT8) image-encoder graph of an ``avs-export onnx`` folder, encode ``-T``
frames (``frames`` per call), once as a warm-up and ``--runs`` times measured.
Reported: RSS after loading the session (weights), the process's RSS
high-water mark over the runs, and seconds per frame (median).

    python benchmarks/ort_encoder_memory.py --graphs <avs-export onnx folder> --T 5 --frames 1 --frames 5 \
        --options no_pattern --options no_pattern_no_reuse
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OPTIONS = {"default": {}, "no_pattern": {"pattern": False}, "no_arena": {"arena": False},
           "no_arena_no_pattern": {"arena": False, "pattern": False},
           "no_pattern_no_reuse": {"pattern": False, "reuse": False},  # the backend's CPU sessions
           "no_arena_no_pattern_no_reuse": {"arena": False, "pattern": False, "reuse": False},
           # measured, not adopted by the backend: the frame count fixed at load (its one frame per call), so
           # that ONNX Runtime's optimiser sees static shapes (bias adds fused into Gemm, expands folded)
           "no_pattern_no_reuse_fixed": {"pattern": False, "reuse": False, "fixed": True}}


def child(graphs: str, precision: str, T: int, frames: int, runs: int, arena: bool, pattern: bool, reuse: bool,
          threads: int, fixed: bool = False) -> None:
    import numpy as np
    import onnxruntime as ort

    from avs_engine.artifacts.graph_manifest import read_manifest
    from avs_engine.bench.memory import current_rss_bytes, peak_rss_bytes

    manifest = read_manifest(Path(graphs), check_hashes=False)
    cfg = manifest.model_config()
    o = ort.SessionOptions()
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.intra_op_num_threads = threads
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    o.enable_cpu_mem_arena = arena
    o.enable_mem_pattern = pattern
    o.enable_mem_reuse = reuse
    if fixed:
        o.add_free_dimension_override_by_name("T", frames)
    t0 = time.perf_counter()
    sess = ort.InferenceSession(str(manifest.graph_path(precision, "image_encoder")), o, providers=["CPUExecutionProvider"])
    load_s = time.perf_counter() - t0
    loaded = current_rss_bytes()
    rng = np.random.default_rng(0)
    S = cfg.encoder.img_size
    image = rng.standard_normal((T, 3, S, S), dtype=np.float32)
    a128 = rng.standard_normal((T, cfg.audio.embed_dim), dtype=np.float32)
    times = []
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        for i in range(0, T, frames):
            sess.run(None, {"image": image[i : i + frames], "a128": a128[i : i + frames]})
        times.append(time.perf_counter() - t0)
    print(json.dumps({"load_s": load_s, "warmup_s": times[0], "median_s_per_frame": statistics.median(times[1:]) / T,
                      "rss_loaded_mb": loaded / 1e6, "peak_rss_mb": peak_rss_bytes() / 1e6}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--graphs", required=True)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--T", type=int, default=5)
    ap.add_argument("--frames", type=int, action="append", default=[])
    ap.add_argument("--options", action="append", default=[])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default=None)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--arena", type=int, default=1)
    ap.add_argument("--pattern", type=int, default=1)
    ap.add_argument("--reuse", type=int, default=1)
    ap.add_argument("--fixed", type=int, default=0)
    a = ap.parse_args()
    if a.child:
        child(a.graphs, a.precision, a.T, a.frames[0], a.runs, bool(a.arena), bool(a.pattern), bool(a.reuse),
              a.threads, bool(a.fixed))
        return
    import onnxruntime

    from avs_engine.artifacts.graph_manifest import read_manifest
    from avs_engine.bench.machine import cpu_model

    preset = read_manifest(Path(a.graphs), check_hashes=False).model_config().name
    started = dt.datetime.now(dt.timezone.utc)
    rows = []
    for opt in a.options or ["default"]:
        o = {"arena": True, "pattern": True, "reuse": True, "fixed": False, **OPTIONS[opt]}
        for frames in a.frames or [1]:
            cmd = [sys.executable, __file__, "--child", "--graphs", a.graphs, "--precision", a.precision, "--T", str(a.T),
                   "--frames", str(frames), "--runs", str(a.runs), "--threads", str(a.threads),
                   "--arena", str(int(o["arena"])), "--pattern", str(int(o["pattern"])), "--reuse", str(int(o["reuse"])),
                   "--fixed", str(int(o["fixed"]))]
            r = subprocess.run(cmd, capture_output=True, text=True)
            row = {"options": opt, "frames_per_call": frames}
            if r.returncode != 0:
                row["error"] = (r.stderr.strip().splitlines() or ["?"])[-1]
            else:
                row.update(json.loads(r.stdout.strip().splitlines()[-1]))
            print(row, flush=True)
            rows.append(row)
    doc = {"written_by": "benchmarks/ort_encoder_memory.py", "date": started.isoformat(timespec="seconds"),
           "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "threads": a.threads, "preset": preset,
           "precision": a.precision, "T": a.T, "runs": a.runs, "python": platform.python_version(),
           "onnxruntime": onnxruntime.__version__, "load_average_start_end": [os.getloadavg()[0]], "rows": rows}
    name = a.name or f"ort_encoder_memory_{preset}_{a.precision}"
    (HERE / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = [f"# {preset} image encoder ({a.precision}) on ONNX Runtime CPU: session options and frames per call", "",
             f"Written by `benchmarks/ort_encoder_memory.py` on {started:%Y-%m-%d %H:%M} UTC. CPU: {doc['cpu']}, "
             f"{doc['logical_cpus']} logical CPUs (shared with other jobs: load average {doc['load_average_start_end'][0]:.1f} "
             f"at the end), {a.threads} threads, onnxruntime {onnxruntime.__version__}. Each row: a fresh process "
             f"encoding T = {a.T} random frames, one warm-up pass and {a.runs} measured (median per frame).", "",
             "| session options | frames per call | s per frame | RSS after load (MB) | peak RSS (MB) |", "|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['options']} | {r['frames_per_call']} | failed: {r['error'][:100]} | | |")
        else:
            lines.append(f"| {r['options']} | {r['frames_per_call']} | {r['median_s_per_frame']:.2f} | "
                         f"{r['rss_loaded_mb']:.0f} | {r['peak_rss_mb']:.0f} |")
    (HERE / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
