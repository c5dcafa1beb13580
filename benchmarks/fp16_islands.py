"""Measure which ops the FP16 graphs must keep in float32 (writes benchmarks/fp16_islands.md).

For each preset (random weights, seed 0) the four FP32 graphs are exported
once; each candidate island list is then applied and every graph is run on
ONNX Runtime CPU at the inputs' normal scale and at 100x (to provoke
overflow), fed the float32 reference chain's stage inputs. Reported:

1. relative L2 error of the FP16 graph vs PyTorch float32 (``inf`` = non-finite output);
2. the float16 headroom each candidate op needs, measured in the FP32 graph:
   the largest running quantity a kernel that accumulates in float16 would
   hold (LayerNormalization: a row's sum of squares; ReduceMean/ReduceSum: a
   row's sum; ReduceL2: a row's sum of squares; Softmax: the largest |logit|
   and the row length; Pow: its largest output). Above 65504 float16 overflows.

ONNX Runtime's CPU kernels compute these ops in float32 internally (only the
output is rounded), so (1) shows rounding, not overflow; (2) shows what a
strictly float16 kernel (TensorRT's strongly typed network) would face.
Also measured: the encoder and decoder exported without the LayerNorm2d
rewrite (ReduceMean/Pow/Sqrt in the graph).

    python benchmarks/fp16_islands.py --preset tiny --preset vit_b
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from avs_engine.export.fp16 import FLOAT32_ISLANDS, convert_fp16
from avs_engine.export.onnx_export import export_graph
from avs_engine.checks.onnx_parity import random_clip, rel_l2, run_reference
from avs_engine.export.wrappers import GRAPHS, graph_modules
from avs_engine.reference import build_model
from avs_engine.artifacts.spec import STAGE_ORDER, STAGES

CANDIDATES = {
    "none": (),
    "LN": ("LayerNormalization",),
    "LN+softmax": ("LayerNormalization", "Softmax"),
    "LN+softmax+reductions": FLOAT32_ISLANDS,
}
SCALES = (1.0, 100.0)
HEADROOM_OPS = ("LayerNormalization", "ReduceMean", "ReduceSum", "ReduceL2", "Softmax", "Pow")


def session(model_or_path) -> ort.InferenceSession:
    src = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) else str(model_or_path)
    return ort.InferenceSession(src, providers=["CPUExecutionProvider"])


def scaled(inputs: dict[str, np.ndarray], k: float) -> dict[str, np.ndarray]:
    return {n: (v * k).astype(np.float32) for n, v in inputs.items()}


def _const(model: onnx.ModelProto, name: str):
    for t in model.graph.initializer:
        if t.name == name:
            return onnx.numpy_helper.to_array(t)
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            return onnx.numpy_helper.to_array(n.attribute[0].t)
    return None


def headroom(fp32_path: Path, inputs: dict[str, np.ndarray]) -> dict[str, float]:
    """op type -> the largest float16-accumulator quantity it needs (see module docstring)."""
    model = onnx.load(str(fp32_path))
    nodes = [n for n in model.graph.node if n.op_type in HEADROOM_OPS]
    if not nodes:
        return {}
    known = {o.name for o in model.graph.output}
    for n in nodes:
        if n.input[0] not in known:
            model.graph.output.append(onnx.helper.make_tensor_value_info(n.input[0], onnx.TensorProto.FLOAT, None))
            known.add(n.input[0])
    names = [o.name for o in model.graph.output]
    values = dict(zip(names, session(model).run(names, inputs)))
    out: dict[str, float] = {}
    for n in nodes:
        x = values[n.input[0]].astype(np.float64)
        if n.op_type == "LayerNormalization":
            axis = next((a.i for a in n.attribute if a.name == "axis"), -1) % x.ndim
            need = float((x**2).sum(axis=tuple(range(axis, x.ndim))).max())
        elif n.op_type == "Softmax":
            need = float(np.abs(x).max())
        elif n.op_type == "Pow":  # only in SAM's decomposed LayerNorm2d: (x - mean)**2
            need = float((x**2).max())
        else:
            axes = _const(model, n.input[1]) if len(n.input) > 1 and n.input[1] else None
            axes = tuple(int(a) % x.ndim for a in axes) if axes is not None else tuple(range(x.ndim))
            need = float(((x**2) if n.op_type == "ReduceL2" else np.abs(x)).sum(axis=axes).max())
        out[n.op_type] = max(out.get(n.op_type, 0.0), need)
    return out


def measure(preset: str, T: int, work: Path, plain_stages=("image_encoder", "mask_decoder")) -> list[str]:
    torch.manual_seed(0)
    model = build_model(preset, seed=0)
    cfg = model.config
    clip = random_clip(cfg, T, seed=0)
    stage_in, values = {}, dict(clip)
    for s in STAGE_ORDER:
        stage_in[s] = {n: values[n] for n in STAGES[s].input_names}
        values.update(run_reference(model, s, stage_in[s]))

    t0 = time.perf_counter()
    mods = graph_modules(model)
    fp32 = {s: export_graph(mods[s], STAGES[s], cfg, work / preset / f"{s}.onnx")[0] for s in STAGE_ORDER}
    # The same encoder/decoder without the LayerNorm2d rewrite: SAM's decomposed LayerNorm2d.
    plain = {s: export_graph(GRAPHS[s](model).eval(), STAGES[s], cfg, work / preset / f"{s}_ln2d.onnx")[0]
             for s in plain_stages}
    export_s = time.perf_counter() - t0

    refs = {(s, k): run_reference(model, s, scaled(stage_in[s], k)) for s in STAGE_ORDER for k in SCALES}

    def errors(path: Path, s: str, islands) -> list[str]:
        sess = session(convert_fp16(path, islands))
        cells = []
        for k in SCALES:
            got = sess.run(list(STAGES[s].output_names), scaled(stage_in[s], k))
            cells.append(max(rel_l2(g, refs[(s, k)][n]) for g, n in zip(got, STAGES[s].output_names)))
        return [f"{e:.1e}" if np.isfinite(e) else "**inf/nan**" for e in cells]

    lines = [f"### {preset} (T={T}, random weights seed 0; export of the graphs took {export_s:.0f} s)", ""]
    lines += ["FP16 graph vs PyTorch float32, worst output's relative L2, at input scale " + " / ".join(f"x{k:g}" for k in SCALES) + ":", ""]
    lines += ["| graph | " + " | ".join(f"{c} x{k:g}" for c in CANDIDATES for k in SCALES) + " |",
              "|---|" + "---|" * (len(CANDIDATES) * len(SCALES))]
    for s in STAGE_ORDER:
        lines.append(f"| {s} | " + " | ".join(c for name, isl in CANDIDATES.items() for c in errors(fp32[s], s, isl)) + " |")
    for s, p in plain.items():
        lines.append(f"| {s}, LayerNorm2d not rewritten | " + " | ".join(c for name, isl in CANDIDATES.items() for c in errors(p, s, isl)) + " |")
    lines += ["", "Float16 headroom needed (largest accumulator value of a float16-accumulating kernel; limit 65504):", ""]
    lines += ["| graph | scale | " + " | ".join(HEADROOM_OPS) + " |", "|---|---|" + "---|" * len(HEADROOM_OPS)]
    rows = [(s, fp32[s], s) for s in STAGE_ORDER] + [(f"{s}, LayerNorm2d not rewritten", p, s) for s, p in plain.items()]
    for label, path, s in rows:
        for k in SCALES:
            h = headroom(path, scaled(stage_in[s], k))
            cells = [(f"**{h[o]:.3g}**" if h[o] > 65504 else f"{h[o]:.3g}") if o in h else "-" for o in HEADROOM_OPS]
            lines.append(f"| {label} | x{k:g} | " + " | ".join(cells) + " |")
    lines += ["", "(Softmax column: largest |logit|; its sum of exp(x - max) is at most the row length.)", ""]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", action="append", default=None)
    ap.add_argument("-T", type=int, default=2)
    ap.add_argument("--plain", default="image_encoder,mask_decoder",
                    help="graphs also exported without the LayerNorm2d rewrite ('' for none)")
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("fp16_islands.md"))
    args = ap.parse_args()
    presets = args.preset or ["tiny"]
    lines = [
        "# FP16 islands: measurements",
        "",
        f"Written by `benchmarks/fp16_islands.py` on {dt.date.today()}: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}.",
        "Chosen islands (`avs_engine/export/fp16.py`): " + ", ".join(FLOAT32_ISLANDS) + ".",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for p in presets:
            lines += measure(p, args.T, Path(tmp), tuple(x for x in args.plain.split(",") if x))
            print("\n".join(lines))
    args.out.write_text("\n".join(lines) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
