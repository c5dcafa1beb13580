"""One windowed block of SAM's encoder (64x64 tokens, 14x14 windows) on ONNX Runtime CPU: SAM's
order of operations against :class:`~avs_engine.exact.windowed_block.WindowedBlock`, FP32 and INT8.

Forms (both exported alone with the exporter the graphs use, input [1, 64, 64, C]):
  sam       SAM's Block with the rel-pos bias folded into the window score matmul: pad to
            70x70, qkv / attention / proj on 4900 tokens, crop
  windowed  qkv on the 4096 real tokens, padded with its bias; proj after the crop;
            windows and heads split by one transpose each way
  zeropad   as windowed, but k and v without their bias, so the padding is one zero Pad: the
            k bias shifts every score of a query by the same amount (the softmax drops it) and
            the v bias passes through the softmax's weights unchanged, so it joins proj's bias
            (tried for the graphs, not adopted: no faster)

``--dynamic-frames`` exports the frame axis dynamic, as in the image-encoder graph (ONNX Runtime
then cannot fold the padding's bias rows into constants).

INT8 graphs are the FP32 ones quantized with the image encoder's plan (dynamic, weight
products only). Every graph is checked against SAM's block in float64 (relative L2).
Timing: all sessions (the backend's session options) live in one process and take turns
run by run, because this kind of shared VM has slow phases lasting seconds; each figure
is the median of ``--runs`` turns after one warm-up turn.

    python benchmarks/windowed_block_cpu.py --preset vit_b --preset vit_h --runs 7
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FORMS = ("sam", "windowed", "zeropad")


def _block(preset: str):
    """A windowed SAM block of ``preset``'s size, random weights with a non-zero rel-pos table and bias."""
    import torch
    from segment_anything.modeling.image_encoder import Block

    from avs_engine.config import resolve

    cfg = resolve(preset).encoder
    torch.manual_seed(0)
    block = Block(cfg.embed_dim, cfg.num_heads, qkv_bias=True, norm_layer=lambda d: torch.nn.LayerNorm(d, eps=1e-6),
                  use_rel_pos=True, window_size=cfg.window_size, input_size=(cfg.grid, cfg.grid)).eval()
    with torch.no_grad():  # SAM initialises the tables to zero: random values so the bias matters
        block.attn.rel_pos_h.normal_(0, 0.5)
        block.attn.rel_pos_w.normal_(0, 0.5)
        block.attn.qkv.bias.normal_(0, 0.5)
    return cfg, block


def _zeropad_block(block):
    """``WindowedBlock`` with the k/v biases moved out of the padding (module docstring: zeropad)."""
    import torch
    import torch.nn.functional as F

    from avs_engine.exact.windowed_block import WindowedBlock

    class ZeroPadWindowedBlock(WindowedBlock):
        def forward(self, x):
            _, H, W, C = x.shape
            ws, heads = self.window_size, self.attn.num_heads
            d = C // heads
            pad_h, pad_w = (ws - H % ws) % ws, (ws - W % ws) % ws
            Hp, Wp, nh, nw = H + pad_h, W + pad_w, (H + pad_h) // ws, (W + pad_w) // ws
            b = self.attn.qkv.bias
            qkv = F.linear(self.norm1(x), self.attn.qkv.weight, torch.cat([b[:C], torch.zeros_like(b[C:])]))
            qkv = F.pad(qkv, (0, 0, 0, pad_w, 0, pad_h))
            q, k, v = qkv.reshape(-1, nh, ws, nw, ws, 3, heads, d).permute(5, 0, 1, 3, 6, 2, 4, 7).reshape(
                3, -1, ws * ws, d).unbind(0)
            o = self.attn.attend(q, k, v, ws, ws)
            o = o.reshape(-1, nh, nw, heads, ws, ws, d).permute(0, 1, 4, 2, 5, 3, 6).reshape(-1, Hp, Wp, C)[:, :H, :W]
            p = self.attn.proj
            x = x + F.linear(o, p.weight, p.bias + p.weight @ b[2 * C:])
            return x + self.mlp(self.norm2(x))

    return ZeroPadWindowedBlock(block)


def _module(form: str, block):
    from avs_engine.exact.relpos_matmul import RelPosMatmulAttention
    from avs_engine.exact.windowed_block import WindowedBlock
    from avs_engine.export.wrappers import swap_modules

    if form == "sam":
        return swap_modules(block, lambda _, m: RelPosMatmulAttention(m) if m is block.attn else None)
    if form == "windowed":
        return WindowedBlock(block)
    if form == "zeropad":
        return _zeropad_block(block)
    raise ValueError(form)


def export_forms(preset: str, forms, precisions, out: Path, dynamic_frames: bool = False) -> tuple[dict, object]:
    """(form, precision) -> {path, rel_l2_vs_float64}; and the input used."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from avs_engine.backends.onnxruntime_backend import session_options
    from avs_engine.export.int8 import PLANS, quantize_graph
    from avs_engine.export.onnx_export import _quiet

    cfg, block = _block(preset)
    x = torch.randn(1, cfg.grid, cfg.grid, cfg.embed_dim)
    with torch.no_grad():
        ref = block.double()(x.double()).numpy()
        block.float()
    res = {}
    for form in forms:
        tag = "_dyn" if dynamic_frames else ""
        fp32 = out / f"{preset}_{form}{tag}_fp32.onnx"
        if not fp32.exists():
            dyn = {"dynamic_shapes": {"x": {0: torch.export.Dim("T", min=1, max=64)}}} if dynamic_frames else {}
            with _quiet(), torch.no_grad():
                prog = torch.onnx.export(_module(form, block), (x,), dynamo=True, input_names=["x"],
                                         output_names=["y"], opset_version=20, verbose=False, **dyn)
            prog.save(str(fp32))
        for precision in precisions:
            path = fp32 if precision == "fp32" else out / f"{preset}_{form}{tag}_int8.onnx"
            if not path.exists():
                quantize_graph(fp32, path, PLANS["image_encoder"])
            sess = ort.InferenceSession(str(path), session_options(ort, None), providers=["CPUExecutionProvider"])
            y = sess.run(None, {"x": x.numpy()})[0]
            res[form, precision] = {"path": str(path),
                                    "rel_l2_vs_float64": float(np.linalg.norm(y - ref) / np.linalg.norm(ref))}
    return res, x.numpy()


def time_turns(paths: dict, x, runs: int, threads: int) -> dict:
    """key -> seconds of each turn: every session runs once per turn (order reversed each turn), ``runs``
    turns after a warm-up turn."""
    import onnxruntime as ort

    from avs_engine.backends.onnxruntime_backend import session_options

    sessions = {k: ort.InferenceSession(p, session_options(ort, threads), providers=["CPUExecutionProvider"])
                for k, p in paths.items()}
    times: dict = {k: [] for k in sessions}
    order = list(sessions)
    for turn in range(runs + 1):
        for k in order:
            t0 = time.perf_counter()
            sessions[k].run(None, {"x": x})
            if turn:
                times[k].append(time.perf_counter() - t0)
        order.reverse()  # neither form always runs right after the other
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", action="append", default=[])
    ap.add_argument("--precision", action="append", default=[], choices=["fp32", "int8"])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "avs-windowed-block"))
    ap.add_argument("--name", default="windowed_block_cpu")
    ap.add_argument("--form", action="append", default=[], choices=FORMS, help="default: all (sam always runs)")
    ap.add_argument("--dynamic-frames", action="store_true")
    a = ap.parse_args()
    forms = ["sam", *[f for f in (a.form or FORMS) if f != "sam"]]

    import onnxruntime
    import torch

    from avs_engine.bench.machine import cpu_model

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    precisions = a.precision or ["fp32", "int8"]
    started = dt.datetime.now(dt.timezone.utc)
    doc = {"written_by": "benchmarks/windowed_block_cpu.py", "date": started.isoformat(timespec="seconds"),
           "cpu": cpu_model(), "logical_cpus": os.cpu_count(), "threads": a.threads, "runs": a.runs,
           "load_average_start": os.getloadavg(), "python": platform.python_version(), "dynamic_frames": a.dynamic_frames,
           "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}, "presets": {}}
    for preset in a.preset or ["vit_b"]:
        exported, x = export_forms(preset, forms, precisions, work, a.dynamic_frames)
        times = time_turns({k: v["path"] for k, v in exported.items()}, x, a.runs, a.threads)
        rows = [{"form": f, "precision": p, "median_s": statistics.median(times[f, p]), "min_s": min(times[f, p]),
                 # paired by turn: a slow phase of the VM slows both forms of that turn
                 "speedup_vs_sam_median": statistics.median(s / t for s, t in zip(times["sam", p], times[f, p])),
                 "turns_s": times[f, p], "rel_l2_vs_float64": exported[f, p]["rel_l2_vs_float64"]}
                for p in precisions for f in forms]
        for r in rows:
            print(preset, {k: v for k, v in r.items() if k != "turns_s"}, flush=True)
        doc["presets"][preset] = {"rows": rows}
    doc["load_average_end"] = os.getloadavg()
    (HERE / f"{a.name}.json").write_text(json.dumps(doc, indent=1) + "\n")
    (HERE / f"{a.name}.md").write_text(report(doc))


def report(doc: dict) -> str:
    """The Markdown report of one run's JSON document."""
    started = dt.datetime.fromisoformat(doc["date"])
    lines = ["# One windowed encoder block on ONNX Runtime CPU: SAM's order against qkv before the padding", "",
             f"Written by `benchmarks/windowed_block_cpu.py` on {started:%Y-%m-%d %H:%M} UTC. CPU: {doc['cpu']}, "
             f"{doc['logical_cpus']} logical CPUs (load average {doc['load_average_start'][0]:.2f} at start, "
             f"{doc['load_average_end'][0]:.2f} at end), {doc['threads']} threads. torch {doc['versions']['torch']}, "
             f"onnxruntime {doc['versions']['onnxruntime']}.", "",
             "One SAM block with 14x14 window attention on a 64x64 grid (batch 1), exported alone"
             + (" with the frame axis dynamic (as in the encoder graph)" if doc.get("dynamic_frames") else "")
             + "; the sessions "
             f"take turns run by run, median of {doc['runs']} turns after a warm-up. Error: relative L2 against SAM's "
             "block in float64. Speed-up: the median over turns of sam's time / the form's time in the same turn. "
             "This VM's speed swings by 20% from one run to the next, so only differences well above that "
             "are readable from one block; the whole-run reports are the measure.", ""]
    for preset, p in doc["presets"].items():
        lines += [f"## {preset}", "", "| precision | form | median (s) | fastest (s) | speed-up over sam | rel. error |",
                  "|---|---|---|---|---|---|"]
        for r in p["rows"]:
            lines.append(f"| {r['precision']} | {r['form']} | {r['median_s']:.3f} | {r['min_s']:.3f} | "
                         f"{r['speedup_vs_sam_median']:.2f}x | {r['rel_l2_vs_float64']:.1e} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
