"""Where one image-encoder frame's time goes, op by op: ONNX Runtime (FP32 or INT8 graph) or PyTorch.

ONNX Runtime: the exported image-encoder graph with the backend's CPU session
options, one warm-up frame, then one frame with ONNX Runtime's profiler on;
kernel time summed by operator type. PyTorch: the torch backend on a bundle,
built as ``avs-run --backend torch`` builds it, its image-encoder stage: one
warm-up frame, one plain timed frame, then one frame under ``torch.profiler``;
self CPU time summed by aten operator. Random inputs
(image ~ N(0, 1), a128 ~ N(0, 1)), one frame of 1024 x 1024.

    python benchmarks/encoder_op_profile.py --graphs <avs-export onnx folder> --precision int8
    python benchmarks/encoder_op_profile.py --weights vit_h_seed0.safetensors
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _inputs():
    rng = np.random.default_rng(0)
    return rng.standard_normal((1, 3, 1024, 1024), dtype=np.float32), rng.standard_normal((1, 128), dtype=np.float32)


def profile_onnxruntime(graphs: Path, precision: str, threads: int) -> tuple[str, float, dict, dict]:
    import onnxruntime as ort

    from avs_engine.artifacts.graph_manifest import read_manifest
    from avs_engine.backends.onnxruntime_backend import session_options

    path = read_manifest(graphs, check_hashes=False).graph_path(precision, "image_encoder")
    image, a128 = _inputs()
    feeds = {"image": image, "a128": a128}

    def session(profile: bool):
        o = session_options(ort, threads)
        if profile:
            o.enable_profiling = True
            o.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "enc")
        return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])

    s = session(False)
    s.run(None, feeds)  # warm-up
    t = time.perf_counter()
    s.run(None, feeds)
    plain = time.perf_counter() - t
    del s
    s = session(True)
    s.run(None, feeds)
    events = json.loads(Path(s.end_profiling()).read_text())
    total, count = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"].get("op_name", "?")
            total[op] += e["dur"] / 1e6
            count[op] += 1
    return f"onnxruntime {ort.__version__} {precision}", plain, dict(total), dict(count)


def profile_torch(weights: Path, threads: int) -> tuple[str, float, dict, dict]:
    """The torch backend as ``avs-run --backend torch`` builds it (its CPU attention swaps included)."""
    import torch

    from avs_engine.backends import create_runner

    image, a128 = _inputs()
    feeds = {"image": image, "a128": a128}
    with create_runner("torch", weights=weights, threads=threads) as runner:
        runner.run("image_encoder", feeds)  # warm-up
        t = time.perf_counter()
        runner.run("image_encoder", feeds)
        plain = time.perf_counter() - t
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            runner.run("image_encoder", feeds)
        what = runner.description
    total = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
    count = {e.key: e.count for e in prof.key_averages()}
    return what, plain, total, count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--graphs", type=Path, help="an avs-export onnx folder (ONNX Runtime)")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "int8"))
    ap.add_argument("--weights", type=Path, help="a bundle (PyTorch)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--name", required=True, help="report name under benchmarks/")
    a = ap.parse_args()
    if (a.graphs is None) == (a.weights is None):
        ap.error("give --graphs or --weights")
    from avs_engine.bench.machine import cpu_model

    started = dt.datetime.now(dt.timezone.utc)
    load0 = os.getloadavg()[0]
    if a.graphs:
        what, plain, total, count = profile_onnxruntime(a.graphs, a.precision, a.threads)
    else:
        what, plain, total, count = profile_torch(a.weights, a.threads)
    profiled = sum(total.values())
    ops = sorted(total, key=lambda k: -total[k])
    doc = {"written_by": "benchmarks/encoder_op_profile.py", "date": started.isoformat(timespec="seconds"),
           "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "threads": a.threads, "runner": what,
           "load_average_start_end": [load0, os.getloadavg()[0]], "plain_frame_s": plain,
           "profiled_s": profiled, "ops": {k: {"s": total[k], "calls": count.get(k, 0)} for k in ops}}
    (HERE / f"{a.name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = [f"# One image-encoder frame by operator: {what}", "",
             f"Written by `benchmarks/encoder_op_profile.py` on {started:%Y-%m-%d %H:%M} UTC. CPU: {doc['cpu']}, "
             f"{doc['logical_cpus']} logical CPUs, {a.threads} threads (1-min load average {load0:.1f} at start, "
             f"{doc['load_average_start_end'][1]:.1f} at end). One 1024 x 1024 random frame: {plain:.2f} s without "
             f"the profiler; {profiled:.2f} s of operator time under it.", "",
             "| operator | s | share | calls |", "|---|---|---|---|"]
    for k in ops[: a.top]:
        lines.append(f"| {k} | {total[k]:.2f} | {100 * total[k] / profiled:.1f}% | {count.get(k, 0)} |")
    (HERE / f"{a.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
