"""OpenVINO against ONNX Runtime on the same exported image-encoder graph (CPU): time, peak RSS, agreement.

Each measurement is a fresh process: load the graph (ONNX Runtime with the backend's
session options, or OpenVINO ``compile_model`` on CPU, latency hint, the same
thread count), encode ``-T`` random frames one per call, once as warm-up and
``--runs`` times measured. The two runtimes alternate for ``--rounds`` rounds;
medians over rounds. Agreement: relative L2 of OpenVINO's output against ONNX
Runtime's on the same frame.

    PYTHONPATH=.:/path/to/openvino python benchmarks/openvino_cpu.py --graphs <avs-export onnx folder> --rounds 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def child(runtime: str, graph: str, T: int, runs: int, threads: int, out_npy: str) -> None:
    from avs_engine.bench.memory import current_rss_bytes, peak_rss_bytes

    rng = np.random.default_rng(0)
    image = rng.standard_normal((T, 3, 1024, 1024), dtype=np.float32)
    a128 = rng.standard_normal((T, 128), dtype=np.float32)
    t0 = time.perf_counter()
    if runtime == "onnxruntime":
        import onnxruntime as ort

        from avs_engine.artifacts.profiles import CPU_SESSION_MEMORY_OPTIONS

        o = ort.SessionOptions()
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        o.intra_op_num_threads = threads
        o.add_session_config_entry("session.intra_op.allow_spinning", "0")
        for k, v in CPU_SESSION_MEMORY_OPTIONS.items():
            setattr(o, k, v)
        sess = ort.InferenceSession(graph, o, providers=["CPUExecutionProvider"])
        version = ort.__version__
        run = lambda i: sess.run(None, {"image": image[i : i + 1], "a128": a128[i : i + 1]})[0]  # noqa: E731
    else:
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(graph, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
                                                     "INFERENCE_PRECISION_HINT": "f32"})
        req = compiled.create_infer_request()
        version = ov.__version__
        run = lambda i: req.infer({"image": image[i : i + 1], "a128": a128[i : i + 1]})[compiled.output(0)].copy()  # noqa: E731
    load_s = time.perf_counter() - t0
    loaded = current_rss_bytes()
    times = []
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        outs = [run(i) for i in range(T)]
        times.append((time.perf_counter() - t0) / T)
    np.save(out_npy, outs[0])
    print(json.dumps({"runtime": runtime, "version": version, "load_s": load_s, "s_per_frame": statistics.median(times[1:]),
                      "rss_loaded_mb": loaded / 1e6, "peak_rss_mb": peak_rss_bytes() / 1e6}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--graphs", required=True)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("-T", type=int, default=1)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", nargs=2)
    a = ap.parse_args()
    graph = str(Path(a.graphs) / a.precision / "image_encoder.onnx")
    if a.child:
        child(a.child[0], graph, a.T, a.runs, a.threads, a.child[1])
        return
    from avs_engine.bench.machine import cpu_model

    started = dt.datetime.now(dt.timezone.utc)
    load0 = os.getloadavg()
    res: dict[str, list[dict]] = {"onnxruntime": [], "openvino": []}
    outs = {}
    for rnd in range(a.rounds):
        for rt in (("onnxruntime", "openvino") if rnd % 2 == 0 else ("openvino", "onnxruntime")):
            npy = os.path.join(tempfile.gettempdir(), f"avs-openvino-{rt}.npy")
            r = subprocess.run([sys.executable, __file__, "--graphs", a.graphs, "--precision", a.precision, "-T", str(a.T),
                                "--runs", str(a.runs), "--threads", str(a.threads), "--child", rt, npy],
                               capture_output=True, text=True)
            row = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {"error": r.stderr.strip()[-300:]}
            row["load_1min_before"] = os.getloadavg()[0]
            print(rt, row, flush=True)
            res[rt].append(row)
            outs[rt] = np.load(npy) if r.returncode == 0 else None
    rel = None
    if all(v is not None for v in outs.values()):
        rel = float(np.linalg.norm(outs["openvino"] - outs["onnxruntime"]) / np.linalg.norm(outs["onnxruntime"]))
    summary = {}
    for rt, rows in res.items():
        ok = [r for r in rows if "error" not in r]
        summary[rt] = ({"version": ok[0]["version"], "s_per_frame": statistics.median(r["s_per_frame"] for r in ok),
                        "peak_rss_mb": max(r["peak_rss_mb"] for r in ok), "rss_loaded_mb": max(r["rss_loaded_mb"] for r in ok),
                        "rounds": len(ok)} if ok else {"error": rows[0].get("error")})
    doc = {"written_by": "benchmarks/openvino_cpu.py", "date": started.isoformat(timespec="seconds"), "cpu": cpu_model(),
           "logical_cpus": os.cpu_count(), "threads": a.threads, "graph": f"{a.precision} image_encoder of {a.graphs}",
           "T": a.T, "load_average_start": load0, "load_average_end": os.getloadavg(), "runs": res, "summary": summary,
           "rel_l2_openvino_vs_onnxruntime": rel}
    name = f"openvino_cpu_{Path(a.graphs).name}_{a.precision}"
    (HERE / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    o, v = summary["onnxruntime"], summary["openvino"]
    lines = [f"# OpenVINO vs ONNX Runtime, {Path(a.graphs).name} {a.precision} image encoder, CPU", "",
             f"Written by `benchmarks/openvino_cpu.py` on {started:%Y-%m-%d %H:%M} UTC. CPU: {doc['cpu']}, {doc['logical_cpus']} "
             f"logical CPUs shared with other jobs (1-min load {load0[0]:.1f} at start, {doc['load_average_end'][0]:.1f} at end), "
             f"{a.threads} threads. Fresh process per measurement, runtimes alternating, {a.rounds} rounds; "
             f"{a.T} frame(s) per pass, one warm-up pass.", "",
             "| runtime | s per frame (median of rounds) | RSS after load (MB) | peak RSS (MB) |", "|---|---|---|---|"]
    for rt, s in summary.items():
        lines.append(f"| {rt} {s.get('version', '')} | " + (f"{s['s_per_frame']:.2f} | {s['rss_loaded_mb']:.0f} | {s['peak_rss_mb']:.0f} |"
                                                           if "error" not in s else f"failed: {s['error'][:150]} | | |"))
    if "s_per_frame" in o and "s_per_frame" in v:
        lines += ["", f"OpenVINO time / ONNX Runtime time: {v['s_per_frame'] / o['s_per_frame']:.2f}; peak RSS ratio "
                  f"{v['peak_rss_mb'] / o['peak_rss_mb']:.2f}; relative L2 of the outputs {rel:.1e}."]
    (HERE / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
