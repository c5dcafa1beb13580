"""The image encoder's GEMM shapes on this CPU: ONNX Runtime FP32, ONNX Runtime dynamic INT8, torch FP32.

The ViT encoders spend most of a frame in four products per block, activations
[tokens, C] times a constant weight: qkv [C, 3C], proj [C, C], MLP fc1 [C, 4C]
and fc2 [4C, C] (tokens 4096, or 4900 in the padded 14x14 windows). This times
each of them three ways, as the routes compute them:

  onnxruntime fp32   MatMul with a constant (pre-packed) weight, as in the FP32 graphs
  onnxruntime int8   DynamicQuantizeMatMul (u8 activations quantized per call x s8 weight),
                     the node ONNX Runtime fuses the INT8 graphs' dynamic quantization into
  torch fp32         torch.nn.functional.linear, as the PyTorch route runs the layers

Fresh inputs per shape, one warm-up call each, then ``--reps`` calls each, the
three routes taking turns call by call (this VM has slow phases lasting seconds);
medians. It answers two questions with numbers: how
fast each library's GEMM is here (the ceiling of a GEMM-bound encoder), and how
much faster INT8 products are than FP32 ones on this CPU (the ceiling of the
INT8 speed-up).

    python benchmarks/encoder_gemm_cpu.py --preset vit_b --preset vit_h --reps 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
WIDTH = {"vit_b": 768, "vit_l": 1024, "vit_h": 1280}


def shapes(preset: str) -> list[tuple[str, int, int, int]]:
    """(name, M, K, N) of the encoder's weight products for one frame."""
    c = WIDTH[preset]
    return [("qkv (windows, padded)", 4900, c, 3 * c), ("proj (windows, padded)", 4900, c, c),
            ("mlp fc1", 4096, c, 4 * c), ("mlp fc2", 4096, 4 * c, c)]


def _interleaved_medians(fns: dict, reps: int) -> dict:
    """Median seconds of each callable, timed in turns (a, b, c, a, b, c, ...) after one warm-up call each:
    this VM has slow phases of seconds, and taking turns puts each phase on every route alike."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _ort_session(node_type: str, w: np.ndarray, m: int, k: int, threads: int):
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    if node_type == "fp32":
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"])]
        inits = [numpy_helper.from_array(w, "w")]
    else:
        # what onnxruntime.quantization's dynamic mode writes; the optimiser fuses it into DynamicQuantizeMatMul
        scale = np.abs(w).max(axis=0) / 127.0
        wq = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        nodes = [helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
                 helper.make_node("MatMulInteger", ["xq", "wq", "xz", "wz"], ["acc"]),
                 helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
                 helper.make_node("Mul", ["xs", "ws"], ["s"]),
                 helper.make_node("Mul", ["accf", "s"], ["y"])]
        inits = [numpy_helper.from_array(wq, "wq"), numpy_helper.from_array(np.zeros(w.shape[1], np.int8), "wz"),
                 numpy_helper.from_array(scale.astype(np.float32), "ws")]
    graph = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the backend's sessions
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def measure(preset: str, reps: int, threads: int) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rows = []
    for name, m, k, n in shapes(preset):
        x = rng.standard_normal((m, k), dtype=np.float32)
        w = (rng.standard_normal((k, n), dtype=np.float32) / np.sqrt(k)).astype(np.float32)
        flop = 2.0 * m * k * n
        row = {"preset": preset, "product": name, "M": m, "K": k, "N": n}
        f32, i8 = _ort_session("fp32", w, m, k, threads), _ort_session("int8", w, m, k, threads)
        xt, wt, bt = torch.from_numpy(x), torch.from_numpy(np.ascontiguousarray(w.T)), torch.zeros(n)
        with torch.inference_mode():
            med = _interleaved_medians({"onnxruntime fp32": lambda: f32.run(None, {"x": x}),
                                        "onnxruntime int8": lambda: i8.run(None, {"x": x}),
                                        "torch fp32": lambda: torch.nn.functional.linear(xt, wt, bt)}, reps)
        for route, s in med.items():
            row[route] = {"ms": s * 1e3, "gflops": flop / s / 1e9}
        row["int8 / fp32 speed (onnxruntime)"] = row["onnxruntime fp32"]["ms"] / row["onnxruntime int8"]["ms"]
        row["onnxruntime / torch fp32 speed"] = row["torch fp32"]["ms"] / row["onnxruntime fp32"]["ms"]
        print(row, flush=True)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", action="append", choices=sorted(WIDTH), default=[])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="encoder_gemm_cpu")
    a = ap.parse_args()
    import onnxruntime
    import torch

    from avs_engine.bench.machine import cpu_model

    started = dt.datetime.now(dt.timezone.utc)
    load0 = os.getloadavg()[0]
    rows = [r for p in (a.preset or ["vit_b", "vit_h"]) for r in measure(p, a.reps, a.threads)]
    doc = {"written_by": "benchmarks/encoder_gemm_cpu.py", "date": started.isoformat(timespec="seconds"),
           "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "threads": a.threads, "reps": a.reps,
           "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
           "load_average_start_end": [load0, os.getloadavg()[0]], "rows": rows}
    (HERE / f"{a.name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = ["# The image encoder's GEMM shapes: ONNX Runtime FP32 and INT8 against torch FP32", "",
             f"Written by `benchmarks/encoder_gemm_cpu.py` on {started:%Y-%m-%d %H:%M} UTC. CPU: {doc['cpu']}, "
             f"{doc['logical_cpus']} logical CPUs, {a.threads} threads (1-min load average {load0:.1f} at start, "
             f"{doc['load_average_start_end'][1]:.1f} at end); torch {torch.__version__}, onnxruntime "
             f"{onnxruntime.__version__}. Median of {a.reps} calls after a warm-up, the routes taking turns call by call; GFLOPS count 2*M*K*N for "
             "every route (INT8 included).", "",
             "| preset | product | M x K x N | ORT FP32 ms (GFLOPS) | ORT INT8 ms (GFLOPS) | torch FP32 ms (GFLOPS) "
             "| INT8 / FP32 speed | ORT / torch FP32 speed |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[k]['ms']:.0f} ({r[k]['gflops']:.0f})" for k in ("onnxruntime fp32", "onnxruntime int8", "torch fp32")]
        lines.append(f"| {r['preset']} | {r['product']} | {r['M']} x {r['K']} x {r['N']} | " + " | ".join(cells)
                     + f" | {r['int8 / fp32 speed (onnxruntime)']:.2f}x | {r['onnxruntime / torch fp32 speed']:.2f}x |")
    (HERE / f"{a.name}.md").write_text("\n".join(lines) + "\n")
    print("wrote", HERE / f"{a.name}.md")


if __name__ == "__main__":
    main()
