"""Measure what each INT8 graph should quantize (writes benchmarks/int8_choice.md and .json).

For each model (the bundled demo model's FP32 graphs; vit_b with random
weights, seed 0, exported first), each stage and each candidate plan
(:class:`avs_engine.export.int8.Int8Plan`): the INT8 graph is made from the
FP32 graph and compared with it on generated clips (validation seed range;
static plans calibrate on the training seed range):

1. relative L2 error of the stage's outputs against the FP32 graph's (same inputs);
2. per-frame mask IoU of the FP32 chain with that one graph swapped in, against the FP32 chain
   (median, 5th percentile, minimum);
3. the stage's time, FP32 and INT8 (median over the clips, same process, ONNX Runtime CPU).

    python benchmarks/int8_choice.py --model demo --clips 8 --model vit_b --vit-clips 1 --threads 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime as ort

from avs_engine.artifacts.graph_manifest import read_manifest
from avs_engine.artifacts.spec import STAGE_ORDER
from avs_engine.backends.onnxruntime_backend import cpu_encoder_batch
from avs_engine.export.int8 import HEAD_SCOPES, Int8Plan, quantize_graph
from avs_engine.checks.int8_check import check_stage, generated_clips
from avs_engine.export.ort_chain import reference_chains, session, stage_inputs
from avs_engine.models import DEMO_GRAPHS

HEAD = HEAD_SCOPES

# stage -> candidate name -> plan
CANDIDATES: dict[str, dict[str, Int8Plan]] = {
    "audio": {
        "dyn Conv": Int8Plan("dynamic", ("Conv",)),
        "static QDQ Conv+Gemm": Int8Plan("static", ("Conv", "Gemm")),
    },
    "image_encoder": {
        "block8 MatMul weights, blocks of 128": Int8Plan("blockwise", ("MatMul",)),
        "block8 MatMul weights, blocks of 32": Int8Plan("blockwise", ("MatMul",), block_size=32),
        "dyn MatMul weights": Int8Plan("dynamic", ("MatMul",)),
        "dyn MatMul weights, reduce_range": Int8Plan("dynamic", ("MatMul",), reduce_range=True),
        "dyn MatMul all (attention too)": Int8Plan("dynamic", ("MatMul",), weights_only=False),
        "static QDQ MatMul weights": Int8Plan("static", ("MatMul",)),
    },
    "fusion": {
        "block8 MatMul weights, blocks of 128": Int8Plan("blockwise", ("MatMul",)),
        "dyn MatMul weights": Int8Plan("dynamic", ("MatMul",)),
        "dyn MatMul all (attention too)": Int8Plan("dynamic", ("MatMul",), weights_only=False),
        "static QDQ MatMul weights": Int8Plan("static", ("MatMul",)),
        "static QDQ MatMul+Gemm weights": Int8Plan("static", ("MatMul", "Gemm")),
    },
    "mask_decoder": {
        "block8 MatMul weights, blocks of 128": Int8Plan("blockwise", ("MatMul",)),
        "block8 MatMul weights, head fp32": Int8Plan("blockwise", ("MatMul",), exclude_scopes=HEAD),
        "dyn MatMul weights": Int8Plan("dynamic", ("MatMul",)),
        "dyn MatMul weights, head fp32": Int8Plan("dynamic", ("MatMul",), exclude_scopes=HEAD),
        "dyn MatMul all (attention too), head fp32": Int8Plan("dynamic", ("MatMul",), weights_only=False, exclude_scopes=HEAD),
        "static QDQ MatMul weights, head fp32": Int8Plan("static", ("MatMul",), exclude_scopes=HEAD),
    },
}
# vit_b: static calibration of the encoder runs an augmented copy of a 4096-token ViT
# (every tensor's range): minutes per frame here, so only on the smaller graphs.
VIT_SKIP = {("image_encoder", "static QDQ MatMul weights"), ("image_encoder", "dyn MatMul weights, reduce_range"),
            ("audio", "static QDQ Conv+Gemm"), ("image_encoder", "block8 MatMul weights, blocks of 32")}


def export_vit_b(workdir: Path) -> Path:
    out = workdir / "vit_b_fp32"
    if not (out / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "avs_engine.cli.export", "onnx", "--config", "vit_b", "--seed", "0", "--out", str(out),
                        "--precision", "fp32", "--no-verify"], check=True)
    return out


def measure(graph_dir: Path, clips_n: int, T: int, threads: int, workdir: Path, skip=frozenset(), calib_n: int = 2) -> dict:
    m = read_manifest(graph_dir, check_hashes=False)
    cfg = m.model_config()
    S, out_size = cfg.encoder.img_size, cfg.output_size
    eb = cpu_encoder_batch(cfg)
    fp32 = {s: session(m.graph_path("fp32", s), threads) for s in STAGE_ORDER}
    t0 = time.perf_counter()
    clips = generated_clips(S, clips_n, T, "val")
    refs = reference_chains(fp32, clips, eb)
    calib_refs = reference_chains(fp32, generated_clips(S, calib_n, T, "train"), eb)
    print(f"{cfg.name}: {clips_n} clips x T={T}, reference chains in {time.perf_counter() - t0:.0f} s", flush=True)
    doc = {"model": cfg.name, "clips": clips_n, "T": T, "stages": {}}
    for stage in STAGE_ORDER:
        base = check_stage(stage, fp32[stage], fp32, refs, out_size, S, eb)  # FP32 time of the stage, warm
        rows = {}
        for name, plan in CANDIDATES[stage].items():
            if (stage, name) in skip:
                continue
            t1 = time.perf_counter()
            dst = workdir / f"{cfg.name}_{stage}_{len(rows)}.onnx"
            calib = stage_inputs(calib_refs, stage) if plan.method == "static" else None
            try:
                sel = quantize_graph(m.graph_path("fp32", stage), dst, plan, calibration=calib)
                sess = session(dst, threads)
                check = check_stage(stage, sess, fp32, refs, out_size, S, eb, fp32_seconds=base.seconds_int8)
                c = check.to_dict()
                c["speedup"] = round(base.seconds_int8 / check.seconds_int8, 3)  # against the warm FP32 time
                c["seconds_fp32"] = round(base.seconds_int8, 4)
                rows[name] = {"plan": plan.to_dict(), "selection": sel.summary(), "check": c,
                              "mb": round(dst.stat().st_size / 1e6, 1), "fp32_mb": round(Path(m.graph_path("fp32", stage)).stat().st_size / 1e6, 1)}
                del sess
            except Exception as e:  # a candidate ONNX Runtime cannot make or run is a finding, not a crash
                rows[name] = {"plan": plan.to_dict(), "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
            finally:
                for f in workdir.glob(dst.name + "*"):
                    f.unlink()
            r = rows[name]
            line = r.get("error") or (f"rel L2 {max(r['check']['rel_l2'].values()):.3g}, IoU median {r['check']['iou_median']:.4f} "
                                      f"p5 {r['check']['iou_p5']:.4f}, {r['check']['speedup']:.2f}x")
            print(f"  {cfg.name} {stage} [{name}]: {line} ({time.perf_counter() - t1:.0f} s)", flush=True)
        doc["stages"][stage] = {"fp32_seconds": round(base.seconds_int8, 4), "candidates": rows}
    return doc


def write_md(doc: dict, path: Path) -> None:
    lines = ["# INT8 graphs: what to quantize, per graph (measured)", "",
             f"Written by `benchmarks/int8_choice.py` on {doc['date']}. Machine: {doc['machine']}; load average at start "
             f"{doc['load_start']}, at end {doc['load_end']}. onnxruntime {doc['versions']['onnxruntime']}, onnx {doc['versions']['onnx']}, "
             f"{doc['threads']} threads.", "",
             "Each candidate INT8 graph is made from the FP32 graph with ONNX Runtime's quantization tools (`block8`: "
             "`MatMulNBitsQuantizer`, 8-bit symmetric weights with one scale per block of input channels, accuracy level 4: "
             "activations quantized to int8 per block inside the kernel, integer products; `dyn`: `quantize_dynamic`, int8 "
             "weights per output channel, one activation scale per tensor computed at run time; `static QDQ`: `quantize_static`, "
             "int8 weights per channel, activation scales calibrated on 2 generated training-range clips) and compared with the FP32 graph on generated "
             "validation-range clips: the stage's outputs (relative L2, largest over the clips), and the masks of the FP32 chain "
             "with that one graph swapped in against the FP32 chain's masks (per-frame IoU). Time: the stage on ONNX Runtime CPU, "
             "median over the clips, against the FP32 graph in the same process. `weights`: only products with a weight operand "
             "(the attention's activation-by-activation products stay float32); `head fp32`: the decoder's hypernetwork MLPs, "
             "IoU head and upscaling stay float32.", ""]
    for model in doc["models"]:
        lines += [f"## {model['model']} ({model['clips']} clips x T = {model['T']})", "",
                  "| stage | candidate | quantized | kept float32 | rel L2 | IoU median | IoU p5 | IoU min | FP32 s | INT8 s | speed-up | MB (FP32 MB) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for stage, st in model["stages"].items():
            for name, r in st["candidates"].items():
                if "error" in r:
                    lines.append(f"| {stage} | {name} | | | {r['error']} | | | | | | | |")
                    continue
                c, s = r["check"], r["selection"]
                q = ", ".join(f"{k} {v}" for k, v in s["quantized"].items()) or "nothing"
                k = "; ".join(f"{k} ({v})" for k, v in s["kept_fp32"].items()) or "-"
                rel = ", ".join(f"{v:.2g}" for v in c["rel_l2"].values())
                lines.append(f"| {stage} | {name} | {q} | {k} | {rel} | {c['iou_median']:.4f} | {c['iou_p5']:.4f} | {c['iou_min']:.4f} | "
                             f"{c['seconds_fp32']:.4f} | {c['seconds_int8']:.4f} | {c['speedup']:.2f}x | {r['mb']} ({r['fp32_mb']}) |")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", choices=["demo", "vit_b"], required=True)
    ap.add_argument("--clips", type=int, default=8, help="demo: validation clips")
    ap.add_argument("--vit-clips", type=int, default=1)
    ap.add_argument("-T", type=int, default=5)
    ap.add_argument("--vit-T", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "avs_int8_choice")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("int8_choice"))
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    from avs_engine.bench.machine import cpu_model
    import onnx

    doc = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": f"{cpu_model()}, {os.cpu_count()} logical CPUs",
           "load_start": round(os.getloadavg()[0], 2), "threads": a.threads,
           "versions": {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "python": platform.python_version()}, "models": []}
    for model in a.model:
        if model == "demo":
            doc["models"].append(measure(DEMO_GRAPHS, a.clips, a.T, a.threads, a.workdir))
        else:
            doc["models"].append(measure(export_vit_b(a.workdir), a.vit_clips, a.vit_T, a.threads, a.workdir, skip=VIT_SKIP, calib_n=1))
        doc["load_end"] = round(os.getloadavg()[0], 2)
        a.out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
        write_md(doc, a.out.with_suffix(".md"))
    print(f"wrote {a.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
