"""Whole ``avs-run`` per route on this CPU: time per second of video, peak RSS of the process, mask agreement.

Each run is one ``avs-run`` process on one generated T-second video (one clip),
routes alternating run by run (the order rotates), so load from other jobs
falls on every route alike. Peak RSS is the child's own high-water mark
(its ``VmHWM`` at exit: the whole process, model load included). Time is the
run's own ``result.json`` figure (first decode to last write, model load
excluded) divided by the video's seconds. Masks: per-frame IoU of every route
against the first ONNX Runtime FP32 route's logits (``--save-logits``; logit > 0).

Same weights everywhere: a bundle of the preset's seed-0 random weights for the
torch route, graphs exported from the same seed for the onnxruntime routes.

    python benchmarks/ort_cpu_routes.py --preset vit_b -T 5 --graphs <avs-export onnx folder> \
        --route torch:fp32 --route onnxruntime:fp32 --route onnxruntime:int8 --repeats 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# The child writes its own RSS high-water mark (VmHWM) at exit: getrusage's ru_maxrss of a child starts
# from its parent's high-water mark (Linux carries it across exec), which a parent that built a model has.
RUN = ("import atexit, os, sys\n"
       "def _peak():\n"
       "    with open(os.environ['AVS_PEAK_FILE'], 'w') as f:\n"
       "        f.write(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])\n"
       "atexit.register(_peak)\n"
       "from avs_engine.cli.run import main\n"
       "sys.argv[0] = 'avs-run'\n"
       "main()\n")


def bundle_for(preset: str, work: Path) -> Path:
    path = work / f"{preset}_seed0.safetensors"
    if not path.exists():
        from avs_engine.reference import build_model
        from avs_engine.reference.checkpoint import save_bundle

        save_bundle(build_model(preset, seed=0), path)
    return path


def run_route(route: str, video: Path, graphs: Path, bundle: Path, T: int, threads: int, work: Path) -> dict:
    backend, precision = route.split(":")
    project = Path(tempfile.mkdtemp(dir=work))
    model = ["--weights", str(bundle)] if backend == "torch" else ["--engine-dir", str(graphs)]
    cmd = [sys.executable, "-c", RUN, str(video), *model, "--backend", backend, "--precision", precision,
           "-T", str(T), "--threads", str(threads), "--project", str(project), "--json", "--quiet", "--save-logits",
           "--no-overlay"]
    peak_file = project / "peak_kib"
    env = dict(os.environ, PYTHONPATH=str(REPO), AVS_PEAK_FILE=str(peak_file))
    with tempfile.TemporaryFile("w+") as fout, tempfile.TemporaryFile("w+") as ferr:
        proc = subprocess.Popen(cmd, env=env, stdout=fout, stderr=ferr, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage: its CPU seconds
        proc.returncode = os.waitstatus_to_exitcode(status)
        fout.seek(0)
        ferr.seek(0)
        out, err = fout.read(), ferr.read()
    peak_mb = int(peak_file.read_text()) * 1024 / 1e6 if peak_file.exists() else float("nan")  # VmHWM: kilobytes
    cpu_s = usage.ru_utime + usage.ru_stime  # the whole process, model load included: steadier than wall time under load
    if proc.returncode != 0:
        shutil.rmtree(project, ignore_errors=True)
        return {"route": route, "error": (err.strip().splitlines() or ["?"])[-1], "peak_rss_mb": peak_mb}
    v = json.loads(out)["videos"][0]
    logits = sorted((Path(v["output_dir"]) / "logits").glob("*.npy"))
    masks = [np.load(p) > 0 for p in logits]
    shutil.rmtree(project, ignore_errors=True)
    return {"route": route, "runner": v["model"]["runner"], "seconds_of_video": v["n_seconds"], "peak_rss_mb": peak_mb,
            "total_s": v["timings"]["total_s"], "cpu_s": cpu_s, "stages": {k: s["total_s"] for k, s in v["timings"]["stages"].items()},
            "masks": masks}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", required=True)
    ap.add_argument("-T", type=int, default=5)
    ap.add_argument("--graphs", required=True, type=Path)
    ap.add_argument("--route", action="append", default=[])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "avs-ort-cpu-routes",
                    help="where the bench video, the torch bundle and run folders go")
    ap.add_argument("--name", default=None)
    a = ap.parse_args()
    import onnxruntime
    import torch

    from avs_engine.bench.machine import cpu_model
    from avs_engine.bench.media import make_bench_video
    from avs_engine.checks.compare import mask_iou

    routes = a.route or ["torch:fp32", "onnxruntime:fp32", "onnxruntime:int8"]
    work = a.work
    work.mkdir(parents=True, exist_ok=True)
    bundle = bundle_for(a.preset, work) if any(r.startswith("torch") for r in routes) else None
    video = work / f"routes_{a.T}s.mp4"
    if not video.exists():
        make_bench_video(video, a.T, 25, (640, 360))
    started = dt.datetime.now(dt.timezone.utc)
    load_start = os.getloadavg()
    results: dict[str, list[dict]] = {r: [] for r in routes}
    for rep in range(a.repeats):
        order = routes[rep % len(routes):] + routes[: rep % len(routes)]
        for route in order:
            before = os.getloadavg()[0]
            t = run_route(route, video, a.graphs, bundle, a.T, a.threads, work)
            t["load_1min_before"] = before
            print({k: v for k, v in t.items() if k != "masks"}, flush=True)
            results[route].append(t)
    ref_route = next((r for r in routes if r == "onnxruntime:fp32"), routes[0])
    ref_masks = next((x["masks"] for x in results[ref_route] if "masks" in x), None)
    summary = {}
    for route, runs in results.items():
        ok = [x for x in runs if "error" not in x]
        if not ok:
            summary[route] = {"error": runs[0]["error"] if runs else "not run"}
            continue
        per_s = [x["total_s"] / x["seconds_of_video"] for x in ok]
        row = {"runner": ok[0]["runner"], "runs": len(ok), "s_per_second_of_video": statistics.median(per_s),
               "all_s_per_second_of_video": per_s, "peak_rss_mb": max(x["peak_rss_mb"] for x in ok),
               "cpu_s_per_second_of_video": statistics.median(x["cpu_s"] / x["seconds_of_video"] for x in ok),
               "encoder_s_per_frame": statistics.median(x["stages"]["image_encoder"] / x["seconds_of_video"] for x in ok),
               "load_1min_before": [x["load_1min_before"] for x in ok]}
        if ref_masks is not None and route != ref_route:
            ious = [mask_iou(m, r) for m, r in zip(ok[0]["masks"], ref_masks)]
            row[f"mask_iou_vs_{ref_route}"] = {"median": float(np.median(ious)), "min": float(np.min(ious)), "frames": len(ious)}
        summary[route] = row
    doc = {"written_by": "benchmarks/ort_cpu_routes.py", "date": started.isoformat(timespec="seconds"), "cpu": cpu_model(),
           "logical_cpus": os.cpu_count(), "threads": a.threads, "preset": a.preset, "T": a.T, "repeats": a.repeats,
           "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
           "load_average_start": load_start, "load_average_end": os.getloadavg(), "routes": summary}
    name = a.name or f"ort_cpu_routes_{a.preset}_T{a.T}"
    (HERE / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    torch_row = summary.get("torch:fp32", {})
    ort_row = summary.get("onnxruntime:fp32", {})
    lines = [f"# Whole avs-run on this CPU: {a.preset}, T = {a.T}", "",
             f"Written by `benchmarks/ort_cpu_routes.py` on {started:%Y-%m-%d %H:%M} UTC. CPU: {doc['cpu']}, "
             f"{doc['logical_cpus']} logical CPUs, shared with other jobs (1-min load average {load_start[0]:.1f} at start, "
             f"{doc['load_average_end'][0]:.1f} at end; per run in the JSON); {a.threads} threads; torch {torch.__version__}, "
             f"onnxruntime {onnxruntime.__version__}. One `avs-run` process per run on one generated {a.T} s video "
             f"(640x360, one clip), routes alternating; {a.repeats} run(s) per route. Time: the run's own figure "
             "(first decode to last write, model load excluded) per second of video. Peak RSS: the whole process "
             "(its VmHWM at exit), model load included. CPU: the process's user + system seconds (wait4 rusage, model load "
             "included) per second of video, which load from other jobs changes less than wall time. Random weights (seed 0).", "",
             "| route | runner | s per s of video | CPU s per s of video | encoder s per frame | peak RSS (MB) | vs torch fp32: speed | vs torch fp32: CPU | vs torch fp32: peak RSS | vs ORT fp32: speed | vs ORT fp32: CPU | mask IoU vs ORT fp32 (median / min) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for route, r in summary.items():
        if "error" in r:
            lines.append(f"| {route} | failed: {r['error'][:150]} | | | | | | | | | | |")
            continue
        sp_t = f"{torch_row['s_per_second_of_video'] / r['s_per_second_of_video']:.2f}x" if "s_per_second_of_video" in torch_row else ""
        mem_t = f"{r['peak_rss_mb'] / torch_row['peak_rss_mb']:.2f}x" if "peak_rss_mb" in torch_row else ""
        sp_o = f"{ort_row['s_per_second_of_video'] / r['s_per_second_of_video']:.2f}x" if "s_per_second_of_video" in ort_row else ""
        cpu_t = f"{torch_row['cpu_s_per_second_of_video'] / r['cpu_s_per_second_of_video']:.2f}x" if "cpu_s_per_second_of_video" in torch_row else ""
        cpu_o = f"{ort_row['cpu_s_per_second_of_video'] / r['cpu_s_per_second_of_video']:.2f}x" if "cpu_s_per_second_of_video" in ort_row else ""
        iou = r.get(f"mask_iou_vs_{ref_route}")
        lines.append(f"| {route} | {r['runner']} | {r['s_per_second_of_video']:.2f} | {r['cpu_s_per_second_of_video']:.2f} | "
                     f"{r['encoder_s_per_frame']:.2f} | {r['peak_rss_mb']:.0f} | {sp_t} | {cpu_t} | {mem_t} | {sp_o} | {cpu_o} | "
                     + (f"{iou['median']:.4f} / {iou['min']:.4f} ({iou['frames']} frames)" if iou else "") + " |")
    (HERE / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
