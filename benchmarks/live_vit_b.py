"""What a live second of vit_b costs on this CPU: the live step measured on the exported ONNX graphs.

A live second is one audio example, one image-encoder frame, one ST-BAVA fusion over the ring of the last
T = 5 seconds and one mask-decoder frame (:class:`avs_engine.runtime.live.LiveStep`, exactly what
``avs-run`` runs live). This program pushes seconds of random media (a 1024x1024 RGB frame and 0.975 s of
16 kHz noise each) through that step on ONNX Runtime (CPU, ``--threads`` intra-op threads) for each
precision, after ``--warmup`` seconds that fill the ring (so every measured second fuses a full window of
5), and reports per measured second: wall seconds of compute (the step's own clock), process CPU seconds
(user + system), and the median per stage. Each precision runs in a fresh process (its peak RSS is its own).

The graphs are an ``avs-export onnx`` folder (``manifest.json``; random weights are fine: cost does not
depend on the weights). Run: ``python benchmarks/live_vit_b.py --engine-dir DIR [--seconds 6] [--warmup 4]
[--out benchmarks/live_vit_b]``; writes JSON + Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STAGES = ("preprocess", "audio", "image_encoder", "fusion", "mask_decoder")
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")   # what the int8/fp32 kernels can use


def isa() -> list[str]:
    """The vector instruction sets of this CPU that matter to ONNX Runtime's kernels (from /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in ISA_FLAGS if f in have]
    except OSError:
        pass
    return []


def measure(engine_dir: str, precision: str, seconds: int, warmup: int, threads: int, clip_seconds: int) -> dict:
    """One precision in this process: ``warmup + seconds`` live seconds, the last ``seconds`` measured."""
    import numpy as np

    from avs_engine.backends.model_spec import ModelSpec
    from avs_engine.bench.memory import peak_rss_bytes
    from avs_engine.runtime.live import LiveStep, second_example

    t_load = time.perf_counter()
    spec = ModelSpec.choose(engine_dir=engine_dir, precision=precision, threads=threads)
    runner = spec.create().activate()
    load_s = time.perf_counter() - t_load
    step = LiveStep(runner, clip_seconds)
    rng = np.random.default_rng(0)
    S = step.img_size
    rows = []
    for t in range(warmup + seconds):
        frame = rng.integers(0, 256, (S, S, 3), dtype=np.uint8)
        log_mel = second_example(rng.standard_normal(15600).astype(np.float32) * 0.1)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        res = step.push(t, frame, log_mel)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        assert np.isfinite(res.logits).all()
        rows.append({"second": t, "window": len(res.seconds), "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                     "stages_s": {k: round(v, 4) for k, v in res.timings.items()}})
        print(f"  {precision} second {t}: {wall:.2f} s wall, {cpu:.2f} s CPU, window {len(res.seconds)}",
              file=sys.stderr, flush=True)
    kept = rows[warmup:]
    med = statistics.median
    return {
        "precision": precision, "runs_int8": spec.describe(runner).get("summary", ""),
        "threads": threads, "clip_seconds": clip_seconds, "warmup_seconds": warmup, "measured_seconds": len(kept),
        "load_s": round(load_s, 1),
        "wall_s_per_stream_second": {"median": round(med(r["wall_s"] for r in kept), 3),
                                     "min": min(r["wall_s"] for r in kept), "max": max(r["wall_s"] for r in kept)},
        "cpu_s_per_stream_second": {"median": round(med(r["cpu_s"] for r in kept), 3)},
        "stage_median_s": {k: round(med(r["stages_s"][k] for r in kept), 4) for k in STAGES},
        "peak_rss_gib": round(peak_rss_bytes() / 2**30, 2),
        "seconds": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine-dir", help="an avs-export onnx folder (manifest.json) of vit_b (not needed with --render)")
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--seconds", type=int, default=6, help="measured stream-seconds per precision")
    ap.add_argument("--warmup", type=int, default=4, help="seconds pushed first (fill the ring; not measured)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clip-seconds", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).with_name("live_vit_b")))
    ap.add_argument("--one", metavar="PRECISION", help=argparse.SUPPRESS)   # the child process's task
    ap.add_argument("--render", action="store_true", help="only rewrite the Markdown from the JSON at --out")
    args = ap.parse_args()
    out = Path(args.out)
    if args.render:
        render(json.loads(out.with_suffix(".json").read_text()), out)
        return
    if not args.engine_dir:
        ap.error("--engine-dir is required (except with --render)")
    if args.one:
        print(json.dumps(measure(args.engine_dir, args.one, args.seconds, args.warmup, args.threads, args.clip_seconds)))
        return
    from avs_engine.artifacts.profiles import CPU_SESSION_MEMORY_OPTIONS
    from avs_engine.bench.machine import cpu_model, now_utc, versions

    manifest = json.loads((Path(args.engine_dir) / "manifest.json").read_text())
    load_before = os.getloadavg()
    rows = []
    for p in args.precisions.split(","):
        cmd = [sys.executable, __file__, "--engine-dir", args.engine_dir, "--one", p, "--seconds", str(args.seconds),
               "--warmup", str(args.warmup), "--threads", str(args.threads), "--clip-seconds", str(args.clip_seconds)]
        done = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        if done.returncode != 0:
            raise SystemExit(f"{p}: the measuring process failed ({done.returncode})")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        rows[-1]["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    v = versions()
    result = {
        "date": now_utc(),
        "machine": {"cpu": cpu_model(), "isa": isa(), "cores": os.cpu_count(),
                    "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()]},
        "versions": {k: v[k] for k in ("python", "numpy", "onnxruntime", "avs-engine")},
        "session_options": dict(CPU_SESSION_MEMORY_OPTIONS),
        "model": f"{manifest['config']['name']}, {manifest['checkpoint']['summary']} (cost does not depend on the weights)",
        "rows": rows,
    }
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    render(result, out)


def render(result: dict, out: Path) -> None:
    m, rows = result["machine"], result["rows"]
    r0 = rows[0]
    lines = [
        "# What a live second of vit_b costs on this CPU (measured)",
        "",
        f"{result['date']}; {m['cpu']} ({', '.join(m.get('isa', [])) or 'ISA unknown'}), {m['cores']} cores, shared with other jobs (load average "
        f"{m['load_avg_before'][0]} before, {m['load_avg_after'][0]} after); onnxruntime "
        f"{result['versions']['onnxruntime']}, numpy {result['versions']['numpy']}, Python {result['versions']['python']}; "
        f"{result['model']}. Produced by `benchmarks/live_vit_b.py`.",
        "",
        f"The live step (`LiveStep`: one audio example, one encoder frame, one fusion over the ring, one decoder "
        f"frame) on ONNX Runtime CPU with {r0['threads']} threads, T = {r0['clip_seconds']}: {r0['warmup_seconds']} "
        f"seconds of warm-up fill the ring, then {r0['measured_seconds']} seconds are measured (each fuses a full "
        f"window). Seconds of random media (a 1024x1024 frame, 0.975 s of noise); one run per precision, each in "
        f"its own process. ONNX Runtime session memory options: "
        f"{', '.join(f'{k}={v}' for k, v in result.get('session_options', {}).items()) or 'not recorded'}.",
        "",
        "| precision | compute s per stream-second (median) | min-max | CPU s per stream-second | audio | encoder | fusion | decoder | peak RSS GiB | load after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        w, st = r["wall_s_per_stream_second"], r["stage_median_s"]
        lines.append(f"| {r['precision']} | {w['median']} | {w['min']}-{w['max']} | {r['cpu_s_per_stream_second']['median']} | "
                     f"{st['audio']} | {st['image_encoder']} | {st['fusion']} | {st['mask_decoder']} | "
                     f"{r['peak_rss_gib']} | {r['load_avg_after'][0]} |")
    lines += ["", "## Reading it", ""]
    for r in rows:
        w, st, cpu = r["wall_s_per_stream_second"]["median"], r["stage_median_s"], r["cpu_s_per_stream_second"]["median"]
        lines.append(f"- {r['precision']}: {w:g} s of compute per stream-second, {w:.0f}x short of real time on these "
                     f"2 cores as loaded; of it (medians) the encoder frame {st['image_encoder']:.1f} s, the fusion "
                     f"over the window {st['fusion']:.1f} s, audio and decoder {st['audio'] + st['mask_decoder']:.2f} s. "
                     f"{cpu:g} CPU-seconds per stream-second.")
    lines += [
        "- The machine was shared (load average above its 2 cores throughout), so wall times are inflated; CPU",
        "  seconds are less sensitive to the load. With both cores to itself a stream-second would take roughly",
        "  half its CPU seconds of wall time (an estimate, not measured here): still about an order of magnitude",
        "  short of real time. A live vit_b stream needs a GPU (the encoder is 0.97 TFLOP a frame) or a CPU",
        "  with many more cores; the live loop on a slower machine keeps the newest second and drops the rest.",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
