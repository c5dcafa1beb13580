"""One global-attention block of SAM's encoder (64x64 tokens, rel-pos bias) on ONNX Runtime CPU:
the forms the export could use, by time and peak memory.

Each form is exported alone (one ``Attention`` module, input [1, 64, 64, C]) with the
exporter the graphs use, checked against SAM's PyTorch module (relative L2), then
timed in a fresh process per (form, session options): median of ``--runs`` runs
after one warm-up, and the process's RSS high-water mark above its RSS once the
session is loaded (what the block's run adds; weights are a few MB here).

Forms:
  sam        SAM's Attention as it is (full [heads, N, N] scores, two broadcast bias adds)
  folded     the bias inside the score matmul (relpos_matmul's form forced on the 64x64 grid)
  rows<k>    the queries in blocks of k grid rows (avs_engine.exact.blocked_attention)
  sdpa23     SdpaAttention exported at opset 23: one ONNX ``Attention`` node

    python benchmarks/global_attention_cpu.py --preset vit_b --preset vit_h --runs 5
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
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FORMS = ("sam", "folded", "rows4", "rows8", "rows16", "sdpa23")
OPTIONS = {"default": {}, "no_arena": {"arena": False}, "no_pattern": {"pattern": False},
           "no_arena_no_pattern": {"arena": False, "pattern": False}}


def _module(form: str, attn):
    from avs_engine.exact import relpos_matmul
    from avs_engine.exact.blocked_attention import BlockedAttention
    from avs_engine.exact.sdpa_attention import SdpaAttention

    if form == "sam":
        return attn
    if form == "folded":
        m = relpos_matmul.RelPosMatmulAttention(attn)
        m.folds = lambda H, W: True  # force the fold on this grid
        return m
    if form.startswith("rows"):
        return BlockedAttention(attn, rows=int(form[4:]))
    if form == "sdpa23":
        return SdpaAttention(attn)
    raise ValueError(form)


def export_forms(preset: str, forms, out: Path) -> dict:
    """Export every form of one global block of ``preset``; returns form -> {path, rel_l2}."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from segment_anything.modeling.image_encoder import Attention

    from avs_engine.config import resolve
    from avs_engine.export.onnx_export import _quiet

    cfg = resolve(preset).encoder
    g = cfg.grid
    torch.manual_seed(0)
    attn = Attention(cfg.embed_dim, cfg.num_heads, qkv_bias=True, use_rel_pos=True, input_size=(g, g)).eval()
    with torch.no_grad():  # SAM initialises the tables to zero: random values so the bias matters
        attn.rel_pos_h.normal_(0, 0.5)
        attn.rel_pos_w.normal_(0, 0.5)
    x = torch.randn(1, g, g, cfg.embed_dim)
    with torch.no_grad():
        ref = attn.double()(x.double()).numpy()
        attn.float()
    res = {}
    for form in forms:
        path = out / f"{preset}_{form}.onnx"
        if not path.exists():
            with _quiet(), torch.no_grad():
                prog = torch.onnx.export(_module(form, attn), (x,), dynamo=True, input_names=["x"], output_names=["y"],
                                         opset_version=23 if form == "sdpa23" else 20, verbose=False)
            prog.save(str(path))
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        y = sess.run(None, {"x": x.numpy()})[0]
        rel = float(np.linalg.norm(y - ref) / np.linalg.norm(ref))
        ops = sorted({n.op_type for n in __import__("onnx").load(str(path)).graph.node})
        res[form] = {"path": str(path), "rel_l2_vs_float64": rel, "ops": ops}
    return res


def child(path: str, C: int, g: int, runs: int, arena: bool, pattern: bool, threads: int) -> None:
    """Run in a fresh process: time one graph, report JSON on stdout."""
    import numpy as np
    import onnxruntime as ort

    from avs_engine.bench.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss

    o = ort.SessionOptions()
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.intra_op_num_threads = threads
    o.add_session_config_entry("session.intra_op.allow_spinning", "0")
    o.enable_cpu_mem_arena = arena
    o.enable_mem_pattern = pattern
    sess = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, g, g, C), dtype=np.float32)
    loaded = current_rss_bytes()
    reset_peak_rss()
    times = []
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        sess.run(None, {"x": x})
        times.append(time.perf_counter() - t0)
    print(json.dumps({"warmup_s": times[0], "median_s": statistics.median(times[1:]),
                      "rss_loaded_mb": loaded / 1e6, "peak_above_loaded_mb": (peak_rss_bytes() - loaded) / 1e6}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", action="append", default=[])
    ap.add_argument("--form", action="append", default=[])
    ap.add_argument("--options", action="append", default=[], help="session option sets: " + ", ".join(OPTIONS))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "avs-global-attention"))
    ap.add_argument("--name", default="global_attention_cpu")
    ap.add_argument("--child", nargs=4)
    a = ap.parse_args()
    if a.child:
        path, C, g, arena_pattern = a.child
        arena, pattern = (v == "1" for v in arena_pattern.split(","))
        child(path, int(C), int(g), a.runs, arena, pattern, a.threads)
        return

    from avs_engine.bench.machine import cpu_model
    from avs_engine.config import resolve

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    forms = a.form or list(FORMS)
    option_sets = a.options or ["default"]
    started = dt.datetime.now(dt.timezone.utc)
    doc = {"written_by": "benchmarks/global_attention_cpu.py", "date": started.isoformat(timespec="seconds"),
           "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "threads": a.threads, "runs": a.runs,
           "load_average_start": os.getloadavg(), "python": platform.python_version(), "presets": {}}
    import onnxruntime
    import torch

    doc["versions"] = {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}
    for preset in a.preset or ["vit_b"]:
        cfg = resolve(preset).encoder
        exported = export_forms(preset, forms, work)
        rows = []
        for opt in option_sets:
            o = {"arena": True, "pattern": True, **OPTIONS[opt]}
            for form in forms:
                cmd = [sys.executable, __file__, "--runs", str(a.runs), "--threads", str(a.threads), "--child",
                       exported[form]["path"], str(cfg.embed_dim), str(cfg.grid), f"{int(o['arena'])},{int(o['pattern'])}"]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    row = {"form": form, "options": opt, "error": (r.stderr.strip().splitlines() or ["?"])[-1]}
                else:
                    row = {"form": form, "options": opt, **json.loads(r.stdout.strip().splitlines()[-1])}
                row["rel_l2_vs_float64"] = exported[form]["rel_l2_vs_float64"]
                print(preset, row, flush=True)
                rows.append(row)
        doc["presets"][preset] = {"heads": cfg.num_heads, "dim": cfg.embed_dim, "grid": cfg.grid, "rows": rows,
                                  "ops": {f: exported[f]["ops"] for f in forms}}
    doc["load_average_end"] = os.getloadavg()
    (HERE / f"{a.name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = [f"# One global attention block on ONNX Runtime CPU: forms by time and memory", "",
             f"Written by `benchmarks/global_attention_cpu.py` on {started:%Y-%m-%d %H:%M} UTC. CPU: {doc['cpu']}, "
             f"{doc['logical_cpus']} logical CPUs (shared; load average {doc['load_average_start'][0]:.2f} at start, "
             f"{doc['load_average_end'][0]:.2f} at end), {a.threads} threads. torch {torch.__version__}, "
             f"onnxruntime {onnxruntime.__version__}.", "",
             "One SAM global-attention module (64x64 tokens, decomposed rel-pos bias, batch 1), exported alone; "
             f"each (form, session options) timed in a fresh process: median of {a.runs} runs after one warm-up. "
             "Peak = RSS high-water mark above the RSS after loading the session. Error: relative L2 against SAM's "
             "module in float64.", ""]
    for preset, p in doc["presets"].items():
        lines += [f"## {preset} ({p['heads']} heads, width {p['dim']})", "",
                  "| form | session options | time (s) | peak above loaded (MB) | rel. error |", "|---|---|---|---|---|"]
        for r in p["rows"]:
            if "error" in r:
                lines.append(f"| {r['form']} | {r['options']} | failed: {r['error'][:120]} | | |")
            else:
                lines.append(f"| {r['form']} | {r['options']} | {r['median_s']:.3f} | {r['peak_above_loaded_mb']:.0f} | "
                             f"{r['rel_l2_vs_float64']:.1e} |")
        lines.append("")
    (HERE / f"{a.name}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
