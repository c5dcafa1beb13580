"""Concurrent live streams through avs-serve on this CPU: N streams at once, each a Ray actor, real-time sources.

Starts Ray (2 logical CPUs) and the Serve app with the bundled demo model (ONNX Runtime, one thread per
runner), serves N copies of a generated 30 s clip as MPEG-TS over TCP on 127.0.0.1 at real-time pace,
starts one live job per stream with ``POST /v1/streams``, waits for them to end, and reads each job's
masks, dropped seconds and latency from ``GET /v1/streams``. A row runs in real time when no second was
dropped.

Run: ``python benchmarks/live_serve.py [--streams 1 2 4 6] [--seconds 30] [--out benchmarks/live_serve]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import tempfile
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path



def generated_ts(path: Path, seconds: int) -> None:
    """A generated sounding-object clip (the demo's kind of video), remuxed from mp4 to MPEG-TS (a streamable container)."""
    import av

    from avs_engine.data.video import write_generated_video

    mp4 = path.with_suffix(".mp4")
    write_generated_video(mp4, seed=30_000_200, seconds=seconds, fps=25, size=(320, 240))
    with av.open(str(mp4)) as src, av.open(str(path), "w", format="mpegts") as dst:
        streams = {s.index: dst.add_stream_from_template(s) for s in src.streams if s.type in ("video", "audio")}
        for packet in src.demux():
            if packet.dts is None or packet.stream.index not in streams:
                continue
            packet.stream = streams[packet.stream.index]
            dst.mux(packet)


def serve_file(data: bytes, duration_s: float) -> int:
    """Serve ``data`` to one client on 127.0.0.1 at real-time pace; returns the port."""
    sock = socket.create_server(("127.0.0.1", 0))

    def run():
        conn, _ = sock.accept()
        t0, n, chunk = time.monotonic(), len(data), 188 * 20
        try:
            for i in range(0, n, chunk):
                due = t0 + duration_s * i / n
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                conn.sendall(data[i:i + chunk])
        finally:
            conn.close()
            sock.close()

    threading.Thread(target=run, daemon=True).start()
    return sock.getsockname()[1]


def call(url: str, body=None, method=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"),
                                 headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 6])
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--out", default=str(Path(__file__).with_name("live_serve")))
    args = ap.parse_args()

    import ray
    from ray import serve

    from avs_engine.backends.model_spec import ModelSpec
    from avs_engine.scale.serve_app import ServeConfig, start
    tmp = tempfile.mkdtemp(prefix="avs-live-serve-")
    clip = Path(tmp) / "clip.ts"
    generated_ts(clip, int(args.seconds))
    data = clip.read_bytes()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = ServeConfig(runner=ModelSpec.choose(threads=1), img_size=128, allow_sources=("tcp://127.0.0.1",),
                      model_cpus=0.25, ingress_cpus=0.25, stream_cpus=0.25, max_streams=32)
    base = start(cfg, host="127.0.0.1", port=port, name="avs-live-bench")
    load_before = os.getloadavg()
    rows = []
    for n in args.streams:
        ids = [call(base + "/v1/streams", {"source": f"tcp://127.0.0.1:{serve_file(data, args.seconds)}"})["id"]
               for _ in range(n)]
        while True:
            time.sleep(1.0)
            listed = {s["id"]: s for s in call(base + "/v1/streams")["streams"]}
            if all(listed[i]["state"] in ("ended", "failed", "stopped") for i in ids):
                break
        jobs = [listed[i] for i in ids]
        lat = [j["latency"] or {} for j in jobs]
        row = {"streams": n, "masks": sum(j["masks"] or 0 for j in jobs), "dropped": sum(j["dropped"] or 0 for j in jobs),
               "states": sorted({j["state"] for j in jobs}),
               "latency_p50_ms": round(max((x.get("p50_s") or 0) for x in lat) * 1e3, 1),
               "latency_p95_ms": round(max((x.get("p95_s") or 0) for x in lat) * 1e3, 1),
               "latency_max_ms": round(max((x.get("max_s") or 0) for x in lat) * 1e3, 1)}
        row["realtime"] = row["dropped"] == 0 and row["states"] == ["ended"]
        rows.append(row)
        print(row, flush=True)
    serve.shutdown()
    ray.shutdown()
    import onnxruntime

    result = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                          "onnxruntime": onnxruntime.__version__, "ray": ray.__version__,
                          "load_avg_before": [round(x, 2) for x in load_before],
                          "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
              "setup": f"avs-serve in-process (Ray, 2 logical CPUs), bundled demo model on ONNX Runtime fp32, 1 thread per "
                       f"stream actor, T = 5, 1 mask a second; each stream a generated {args.seconds:g} s 320x240 clip "
                       f"served as MPEG-TS over TCP at real-time pace", "rows": rows}
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    m = result["machine"]
    lines = ["# Concurrent live streams through avs-serve on this CPU", "",
             f"{result['date']}; {m['cpu']}, {m['cores']} cores, shared with other jobs (load average "
             f"{m['load_avg_before'][0]} before, {m['load_avg_after'][0]} after); onnxruntime {m['onnxruntime']}, "
             f"ray {m['ray']}. {result['setup']}. Produced by `benchmarks/live_serve.py`.", "",
             "Latency: the worst stream's median / p95 / max, from a second of media having arrived to its mask line.", "",
             "| streams | masks | dropped | p50 ms | p95 ms | max ms | jobs ended | real time |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['streams']} | {r['masks']} | {r['dropped']} | {r['latency_p50_ms']} | {r['latency_p95_ms']} | "
                     f"{r['latency_max_ms']} | {', '.join(r['states'])} | {'yes' if r['realtime'] else 'no'} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
