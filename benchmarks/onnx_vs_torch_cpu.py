"""ONNX Runtime CPU vs the PyTorch CPU reference, per stage and whole clip (writes a markdown table).

Same weights (random, seed 0), same inputs, same process; each timing is the
median of ``--runs`` runs after one warm-up run (reported apart). FP32 masks
are compared too (they must be identical).

    python benchmarks/onnx_vs_torch_cpu.py --preset tiny --preset vit_b -T 5 --runs 20 \
        --threads-for tiny=1,2 --threads-for vit_b=2 --encoder-T vit_b=1 --runs-for vit_b=3
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import torch

from avs_engine.backends.onnxruntime_backend import OnnxRuntimeRunner
from avs_engine.bench.machine import cpu_model
from avs_engine.backends.torch_backend import TorchRunner
from avs_engine.export.onnx_export import export_onnx
from avs_engine.checks.onnx_parity import mask_iou, random_clip, rel_l2, run_reference
from avs_engine.io.postprocess import logits_to_masks
from avs_engine.reference import build_model
from avs_engine.artifacts.spec import STAGE_ORDER, STAGES


def timed_pair(fns: dict, runs: int) -> dict[str, tuple[float, float, int]]:
    """name -> (warm-up seconds, median seconds, runs). The contenders alternate run by
    run, so that load from other jobs on the machine falls on both alike."""
    warm, times = {}, {k: [] for k in fns}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        fn()
        warm[name] = time.perf_counter() - t0
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: (warm[k], statistics.median(times[k]), runs) for k in fns}


def bench(preset: str, T: int, runs: int, encoder_T: int, threads: int, work: Path, log) -> list[str]:
    model = build_model(preset, seed=0)
    engine = work / preset
    export_s = None
    if not (engine / "manifest.json").is_file():
        t0 = time.perf_counter()
        export_onnx(model, engine, precision="fp32", progress=log)
        export_s = time.perf_counter() - t0
        log(f"{preset}: exported in {export_s:.0f} s")
    torch.set_num_threads(threads)
    tr = TorchRunner(model=model).activate()
    orr = OnnxRuntimeRunner(engine, precision="fp32", threads=threads).activate()
    cfg = model.config
    clip = random_clip(cfg, T, seed=0)
    values = dict(clip)
    stage_in = {}
    for s in STAGE_ORDER:
        stage_in[s] = {n: values[n] for n in STAGES[s].input_names}
        values.update(run_reference(model, s, stage_in[s]))  # encoder a frame at a time
    rows = []
    for s in STAGE_ORDER:
        x = stage_in[s]
        t_here = T
        if s == "image_encoder" and encoder_T < T:  # frames are independent: per-frame cost x T
            x = {k: v[:encoder_T] for k, v in x.items()}
            t_here = encoder_T
        res = timed_pair({name: (lambda r=r, s=s, x=x: r.run(s, x)) for name, r in (("torch", tr), ("onnxruntime", orr))}, runs)
        for name, (warm, med, _) in res.items():
            log(f"{preset} {s} {name}: median {med:.3f} s (warm-up {warm:.3f} s), T={t_here}")
        rows.append((s, t_here, res))
    lines = [f"### {preset}, {threads} thread{'s' if threads > 1 else ''}", ""]
    if export_s is not None:
        lines += [f"Export of the four FP32 graphs: {export_s:.0f} s.", ""]
    if encoder_T < T:
        # PyTorch's whole model runs the T frames' encoder at once: vit_b, T=5 passes 19 GB
        # here (killed); the whole clip is the sum of the stages, the encoder x T/encoder_T.
        total = {k: sum(res[k][1] * (T / t_here) for _, t_here, res in rows) for k in ("torch", "onnxruntime")}
        rows.append(("whole clip (sum of stages)", T, {k: (float("nan"), v, 0) for k, v in total.items()}))
        return lines + _table(rows) + ["", "Encoder timed on fewer frames (frames are independent; per-frame cost x T in the sum).",
                                       "FP32 mask agreement: see the parity report (whole chain, IoU vs PyTorch).", ""]
    whole_runs = runs
    logits = {}

    def whole(name, r):
        logits[name] = r.run_clip(clip["image"], clip["log_mel"])

    res = timed_pair({name: (lambda name=name, r=r: whole(name, r)) for name, r in (("torch", tr), ("onnxruntime", orr))}, whole_runs)
    for name, (warm, med, _) in res.items():
        log(f"{preset} whole {name}: median {med:.3f} s (warm-up {warm:.3f} s)")
    rows.append(("whole clip", T, res))
    S, o = cfg.encoder.img_size, cfg.output_size
    iou = mask_iou(logits_to_masks(logits["onnxruntime"], (o, o), mid=S), logits_to_masks(logits["torch"], (o, o), mid=S))
    err = rel_l2(logits["onnxruntime"], logits["torch"])

    lines += _table(rows)
    lines += ["", f"FP32 whole clip: logits rel L2 {err:.1e}; per-frame mask IoU ONNX Runtime vs PyTorch min {iou.min():.4f} "
              f"({'identical masks' if iou.min() == 1.0 else 'masks differ'}).", ""]
    return lines


def _table(rows) -> list[str]:
    out = ["| stage | T | PyTorch CPU (s) | ONNX Runtime CPU (s) | speed-up | runs | warm-up torch / ORT (s) |",
           "|---|---|---|---|---|---|---|"]
    for s, t_here, res in rows:
        (wt, mt, n), (wo, mo, _) = res["torch"], res["onnxruntime"]
        warm = f"{wt:.3f} / {wo:.3f}" if n else "-"
        out.append(f"| {s} | {t_here} | {mt:.3f} | {mo:.3f} | {mt / mo:.2f}x | {n or '-'} | {warm} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", action="append")
    ap.add_argument("-T", type=int, default=5)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--runs-for", action="append", default=[], help="PRESET=N: runs for one preset")
    ap.add_argument("--encoder-T", action="append", default=[], help="PRESET=N: time the encoder on N frames (frames are independent)")
    ap.add_argument("--threads", action="append", type=int, default=None,
                    help="threads for both frameworks (torch.set_num_threads, ORT intra-op); repeat to compare")
    ap.add_argument("--threads-for", action="append", default=[], help="PRESET=N[,N]: thread counts for one preset")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("onnx_cpu.md"))
    args = ap.parse_args()
    runs_for = dict(kv.split("=") for kv in args.runs_for)
    enc_T = dict(kv.split("=") for kv in args.encoder_T)
    load0 = os.getloadavg()
    lines = [
        "# ONNX Runtime CPU vs PyTorch CPU",
        "",
        f"Written by `benchmarks/onnx_vs_torch_cpu.py` on {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}.",
        f"Machine: {cpu_model()}, {os.cpu_count()} logical CPUs (shared with other jobs: load average "
        f"{load0[0]:.1f} at start), Python {platform.python_version()}; torch {torch.__version__} "
        f"(default {torch.get_num_threads()} threads), onnxruntime {ort.__version__} (graph optimisation ALL, no spinning);",
        "each section runs both frameworks with the same thread count.",
        "FP32 graphs, random weights (seed 0), random inputs; median of the runs after one warm-up run;",
        "PyTorch and ONNX Runtime alternate run by run. PyTorch: the reference model in eager mode",
        "(`TorchRunner`, encoder one frame per call on CPU); ONNX Runtime: `OnnxRuntimeRunner` (CPU provider; encoder frames per call from `cpu_encoder_batch`: all T for tiny, 1 for vit_b).",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        threads_for = {k: [int(t) for t in v.split(",")] for k, v in (kv.split("=") for kv in args.threads_for)}
        for p in args.preset or ["tiny"]:
            for n in threads_for.get(p, args.threads or [os.cpu_count()]):
                lines += bench(p, args.T, int(runs_for.get(p, args.runs)), int(enc_T.get(p, args.T)), n, Path(tmp), print)
    lines.append(f"Load average at the end: {os.getloadavg()[0]:.1f}.")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
