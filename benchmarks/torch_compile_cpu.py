"""The torch backend's image encoder on this CPU: bf16 with weights held vs cast per call, and torch.compile.

    python benchmarks/torch_compile_cpu.py [--config vit_b] [--reps 5] [--threads 2]

Routes (one encoder call of one frame, the torch backend's unit of work on a CPU):
- ``fp32``: float32, SDPA attention (the default);
- ``fp32 compile``: the same with ``--compile`` (encoder blocks under torch.compile);
- ``bf16 autocast``: bf16 autocast over float32 weights (every matrix weight cast at every call: the
  route before weights were held);
- ``bf16 held``: bf16, matrix weights held in bf16 (what ``--precision bf16`` runs);
- ``bf16 held compile``: the same with ``--compile``.
The routes alternate within each repetition (the machine's load hits them alike); the medians and each
route's ratio to ``fp32`` are reported, and the compiled routes' first call (compilation) apart. Both
the wall clock and the process's CPU time (all its threads) are recorded: on a machine shared with
other work the CPU time is the steadier measure of the work a route does.
Writes ``benchmarks/torch_compile_cpu.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
if "--warm-cache" not in sys.argv:  # the first call's compile time is a cold compile unless asked otherwise
    import tempfile

    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor_cold_")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from avs_engine.bench.machine import cpu_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def cpu_flags() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return ", ".join(f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags)
    return ""


def make_routes(config: str):
    from avs_engine.backends.torch_backend import TorchRunner
    from avs_engine.exact.mixed_precision import prepare_mixed_precision
    from avs_engine.reference.build import build_model

    base = build_model(config, seed=0).eval()
    routes = {}
    for name, kw in [("fp32", {}), ("fp32 compile", {"compile": True}), ("bf16 held", {"dtype": "bfloat16"}),
                     ("bf16 held compile", {"dtype": "bfloat16", "compile": True})]:
        import copy

        r = TorchRunner(model=copy.deepcopy(base), **kw).activate()
        routes[name] = (r.model, r._precision("image_encoder"))

    legacy = copy.deepcopy(base)
    prepare_mixed_precision(legacy)  # SDPA + float32 norms, weights left float32: autocast casts them per call
    routes["bf16 autocast"] = (legacy, torch.autocast("cpu", dtype=torch.bfloat16))
    return routes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="vit_b")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "torch_compile_cpu")
    p.add_argument("--warm-cache", action="store_true", help="keep inductor's cache (default: a fresh one, so the "
                   "compiled routes' first call is a cold compile)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    routes = make_routes(args.config)
    order = ["fp32", "fp32 compile", "bf16 autocast", "bf16 held", "bf16 held compile"]
    from avs_engine.reference.build import build_model

    S = build_model(args.config, seed=0, device="meta").config.encoder.img_size
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((1, 3, S, S), dtype=np.float32))
    a128 = torch.from_numpy(rng.standard_normal((1, 128), dtype=np.float32))
    outs, first, times, cpu = {}, {}, {name: [] for name in order}, {name: [] for name in order}

    def call(name):
        model, ctx = routes[name]
        with torch.inference_mode(), ctx:
            return model.encode(x, a128).float()

    for name in order:  # first calls: compilation for the compiled routes
        t0, c0 = time.perf_counter(), time.process_time()
        outs[name] = call(name)
        first[name] = (time.perf_counter() - t0, time.process_time() - c0)
        print(f"{name}: first call {first[name][0]:.1f} s wall, {first[name][1]:.1f} s CPU", flush=True)
    for rep in range(args.reps):
        for name in (order if rep % 2 == 0 else order[::-1]):
            t0, c0 = time.perf_counter(), time.process_time()
            call(name)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        print(f"rep {rep + 1}: " + ", ".join(f"{n} {times[n][-1]:.2f} s ({cpu[n][-1]:.2f} CPU)" for n in order), flush=True)
    ref = outs["fp32"]
    load = os.getloadavg()
    rows = []
    for name in order:
        med = statistics.median(times[name])
        rel = ((outs[name] - ref).norm() / ref.norm()).item()
        cmed = statistics.median(cpu[name])
        rows.append({"route": name, "median_s": med, "min_s": min(times[name]), "times_s": times[name],
                     "cpu_median_s": cmed, "cpu_s": cpu[name], "first_call_s": first[name][0],
                     "first_call_cpu_s": first[name][1], "x_vs_fp32": statistics.median(times["fp32"]) / med,
                     "x_vs_fp32_cpu": statistics.median(cpu["fp32"]) / cmed, "rel_l2_vs_fp32": rel})
    doc = {"date": datetime.date.today().isoformat(), "cpu": cpu_model(), "cpu_flags": cpu_flags(),
           "cores": os.cpu_count(), "threads": args.threads, "torch": torch.__version__, "python": platform.python_version(),
           "config": args.config, "unit": "one image-encoder call of one frame", "reps": args.reps,
           "load_average_after": [round(v, 2) for v in load], "rows": rows}
    args.out.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    lines = [f"# torch image encoder on the CPU: held bf16 weights and torch.compile ({args.config})", "",
             f"{doc['date']}; {doc['cpu']} ({doc['cores']} cores; {doc['cpu_flags']}); {args.threads} threads; "
             f"torch {doc['torch']}; Python {doc['python']}. One encoder call of one frame (the torch backend's unit "
             f"on a CPU), {args.reps} repetitions with the routes alternating, median. Load average after the run: "
             f"{', '.join(map(str, doc['load_average_after']))} (other work shared the machine: compare the ratios).",
             "", "| route | wall median s | wall min s | x vs fp32 (wall) | CPU median s | x vs fp32 (CPU time) | "
             "first call s, wall / CPU (compilation) | rel. L2 vs fp32 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['route']} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['x_vs_fp32']:.2f} | "
                     f"{r['cpu_median_s']:.2f} | {r['x_vs_fp32_cpu']:.2f} | {r['first_call_s']:.0f} / "
                     f"{r['first_call_cpu_s']:.0f} | {r['rel_l2_vs_fp32']:.1e} |")
    lines += ["", "Reproduce: `python benchmarks/torch_compile_cpu.py --config vit_b --reps 5`.", ""]
    args.out.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
