"""Live latency of the demo model on this CPU: avs-run in live mode on a real-time source, alone and several at once.

Each run is a separate ``avs-run`` process (ONNX Runtime, the bundled demo graphs, one thread) on an FFmpeg
``lavfi`` test source (320x240 test pattern at 25 fps + a 440 Hz tone) paced at real time (``--realtime``),
for ``--duration`` seconds. From each run's ``result.json``: masks, dropped seconds, latency (from the
moment a second of media had arrived to its mask line being written) median / p95 / max; from the OS:
CPU seconds used (user + system) per second of stream. A row runs in real time when no second was dropped.

Run: ``python benchmarks/live_latency.py [--duration 30] [--out benchmarks/live]``; writes JSON + Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from avs_engine.bench.machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
SOURCE = "testsrc=size=320x240:rate=25[out0];sine=frequency=440:sample_rate=16000[out1]"
ROWS = [(1, 1), (5, 1), (1, 2), (1, 4), (1, 6)]   # (mask fps, concurrent streams)


def run_row(mask_fps: int, streams: int, duration: float) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for i in range(streams):
            cmd = [sys.executable, "-m", "avs_engine.cli.run", SOURCE, "--format", "lavfi", "--realtime",
                   "--duration", str(duration), "--mask-fps", str(mask_fps), "--threads", "1",
                   "--project", tmp, "--name", f"s{i}"]
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        cpu = 0.0
        for p in procs:
            _, status, usage = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            cpu += usage.ru_utime + usage.ru_stime
        docs = []
        for i, p in enumerate(procs):
            err = p.stderr.read().decode(errors="replace")
            if p.returncode != 0:
                raise SystemExit(f"stream {i} failed ({p.returncode}): {err.strip().splitlines()[-1:]}")
            docs.append(json.loads((Path(tmp) / f"s{i}" / "stream" / "result.json").read_text()))
    lat = [d["latency"] for d in docs]
    return {
        "mask_fps": mask_fps, "streams": streams, "duration_s": duration,
        "masks": sum(d["masks"] for d in docs), "dropped": sum(d["dropped"] for d in docs),
        "latency_p50_ms": round(max(x["p50_s"] for x in lat) * 1e3, 1),
        "latency_p95_ms": round(max(x["p95_s"] for x in lat) * 1e3, 1),
        "latency_max_ms": round(max(x["max_s"] for x in lat) * 1e3, 1),
        "cpu_s_per_stream_second": round(cpu / (streams * duration), 3),
        "realtime": all(d["dropped"] == 0 for d in docs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--out", default=str(Path(__file__).with_name("live")))
    ap.add_argument("--render", action="store_true", help="only rewrite the Markdown from the JSON at --out")
    args = ap.parse_args()
    if args.render:
        out = Path(args.out)
        render(json.loads(out.with_suffix(".json").read_text()), out)
        return
    import onnxruntime

    load_before = os.getloadavg()
    rows = []
    for mask_fps, streams in ROWS:
        rows.append(run_row(mask_fps, streams, args.duration))
        print(rows[-1], flush=True)
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "onnxruntime": onnxruntime.__version__,
                    "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
        "model": "bundled demo model, ONNX Runtime fp32 CPU, 1 thread per stream, T = 5",
        "source": f"lavfi {SOURCE} --realtime", "rows": rows,
    }
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    render(result, out)


def render(result: dict, out: Path) -> None:
    m, rows = result["machine"], result["rows"]
    duration = rows[0]["duration_s"]
    lines = [
        "# Live latency: the demo model on this CPU",
        "",
        f"{result['date']}; {m['cpu']}, {m['cores']} cores, shared with other jobs (load average "
        f"{m['load_avg_before'][0]} before, {m['load_avg_after'][0]} after); onnxruntime {m['onnxruntime']}; "
        f"{result['model']}; each stream a separate `avs-run` process on a real-time lavfi source for "
        f"{duration:g} s. Produced by `benchmarks/live_latency.py`.",
        "",
        "Latency: from the moment a second of media had arrived to its mask line being written "
        "(the worst stream's median / p95 / max in the row). CPU: user + system seconds of the whole process "
        "(start-up and model loading included) per second of stream.",
        "",
        "| masks/s | streams | masks | dropped | p50 ms | p95 ms | max ms | CPU s per stream-second | real time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['mask_fps']} | {r['streams']} | {r['masks']} | {r['dropped']} | {r['latency_p50_ms']} | "
                     f"{r['latency_p95_ms']} | {r['latency_max_ms']} | {r['cpu_s_per_stream_second']} | "
                     f"{'yes' if r['realtime'] else 'no'} |")
    lines += [
        "",
        "## Reading it",
        "",
        "- One stream at 1 mask a second: p95 under 300 ms and no dropped second, on a machine whose load average",
        "  was far above its 2 cores. A live second costs about 0.1 CPU-second of the demo model, so 2 cores carry",
        "  many streams: 6 ran in real time at once (no second dropped), with latency growing as they share the cores.",
        "- 5 masks a second costs about 3x the CPU of 1 (each mask is one encoder frame, one fusion over the",
        "  window and one decoder frame) and stayed near real time; a dropped window is the slot doing its job",
        "  under a load spike, not a queue building up.",
        "- Rows are single 30 s runs on a shared machine: the ordering between rows with similar numbers is noise",
        "  (e.g. 2 streams slower than 4).",
        "- Streams here are separate `avs-run` processes. Through `avs-serve` (one Ray actor per stream) 4 demo",
        "  streams ran in real time at once on the same 2 cores with no dropped second: `live_serve.md`.",
        "",
        "## What a live vit_b needs (measured: `live_vit_b.md`)",
        "",
        "The live step itself (one audio example, one encoder frame, one fusion over the ring of 5, one decoder",
        "frame) on vit_b's ONNX graphs, ONNX Runtime CPU, 2 threads, on an AMD EPYC with AVX2 (no AVX-512), shared (load",
        "average 7-15): FP32 36 s of compute per stream-second (21 CPU-seconds), INT8 31 s (17 CPU-seconds),",
        "median of 6 seconds after warm-up (`benchmarks/live_vit_b.py`). A live vit_b needs one stream-second",
        "of compute every second: 2 CPU cores fall an order of magnitude or more short; a GPU (vit_b's encoder",
        "is 0.97 TFLOP a frame) is the realistic host, but no GPU was available to measure it.",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
