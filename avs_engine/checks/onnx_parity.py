"""Parity of exported graphs against the PyTorch reference, measured on ONNX Runtime CPU.

* Per graph, per output: relative L2 error ``||y - y_ref|| / ||y_ref||`` against
  PyTorch float32, every graph fed the same inputs (those of the float32
  reference chain, so errors do not compound). FP32 graphs: at most
  ``FP32_LIMIT``. FP16 graphs: at most ``FP16_FACTOR`` times PyTorch's own
  float16 error on the same inputs (a precision is judged by how far it is
  from float32 compared with PyTorch at that precision, not by a fixed bound).
* Whole chain: per-frame IoU of the masks (logit > 0 after the authors'
  upsampling to the output size) against PyTorch float32: at least
  ``FP32_MIN_IOU`` for FP32 graphs; reported for FP16 graphs.

PyTorch's float16 reference (``fp16_reference``):

* ``"half"``: the model cast to float16 (PyTorch's own fp16 kernels);
* ``"rounded"``: float32 kernels with every weight, input and op output rounded
  to float16 (:class:`RoundToHalf`) -- float16 storage with float32
  accumulation, what GPU fp16 kernels do. PyTorch's CPU float16 matmul runs
  ~8x slower than float32 on the machines here, so this stands in for
  ``"half"`` on big models on a CPU (the tests check both give errors of the
  same size on the tiny preset);
* ``"auto"``: ``"half"`` on CUDA or for models under 50 M parameters, else ``"rounded"``.

Inputs are random (seeded): image ~ N(0,1) per pixel (normalised), log-mel ~ N(-1, 2).
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

from ..io.postprocess import logits_to_masks
from .compare import mask_iou, random_clip, rel_l2  # noqa: F401 (re-exported)
from ..artifacts.spec import STAGE_ORDER, STAGES

FP32_LIMIT = 1e-5
FP16_FACTOR = 2.0
FP32_MIN_IOU = 0.999
_HALF_MAX_PARAMS = 50_000_000


# -- PyTorch references --------------------------------------------------------------------------


class RoundToHalf(TorchDispatchMode):
    """Rounds the float32 output of every aten op to float16 precision (in place).

    With weights and inputs rounded too, a float32 model computes what a
    float16 model with float32 accumulation computes, at float32 speed.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        mutates = func._schema.is_mutable

        def rnd(t):
            if not isinstance(t, torch.Tensor) or t.dtype != torch.float32:
                return t
            if not mutates and torch._debug_has_internal_overlap(t) == 1:
                return t  # an expanded view of a rounded tensor: no new values (and not writable)
            # In place, so that aliases see the rounded values; rounding is idempotent,
            # so views of rounded tensors are unchanged.
            t.copy_(t.to(torch.float16))
            return t

        return tree_map(rnd, out)


def _stage(model, stage: str, x: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if stage == "audio":
        return {"a128": model.embed_audio(x["log_mel"])}
    if stage == "image_encoder":
        return {"enc": model.encode(x["image"], x["a128"])}
    if stage == "fusion":
        dense, sparse = model.fuse(x["enc"], x["a128"])
        return {"dense": dense, "sparse": sparse}
    return {"logits": model.decode(x["enc"], x["dense"], x["sparse"])}


def _device(model) -> torch.device:
    return next(model.parameters()).device


def run_reference(model, stage: str, inputs: dict[str, np.ndarray], kind: str = "float32") -> dict[str, np.ndarray]:
    """One stage of ``model`` on numpy inputs. ``kind``: ``float32``, ``half``
    (``model`` must already be float16) or ``rounded`` (``model`` holds float16-rounded weights)."""
    dev = _device(model)
    dtype = torch.float16 if kind == "half" else torch.float32
    x = {k: torch.from_numpy(np.ascontiguousarray(v)).to(dev, dtype) for k, v in inputs.items()}
    if kind == "rounded":
        x = {k: v.to(torch.float16).to(torch.float32) for k, v in x.items()}
    # The encoder a frame at a time (frames are independent): a ViT frame's global attention maps take GBs.
    T = len(next(iter(x.values())))
    chunks = [{k: v[i : i + 1] for k, v in x.items()} for i in range(T)] if stage == "image_encoder" else [x]
    parts = []
    with torch.inference_mode(), (RoundToHalf() if kind == "rounded" else contextlib.nullcontext()):
        for chunk in chunks:
            parts.append({k: v.float().cpu().numpy() for k, v in _stage(model, stage, chunk).items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def fp16_model(model, kind: str):
    """A float16 copy of ``model`` (``half``) or a float32 copy with float16-rounded weights (``rounded``)."""
    m = copy.deepcopy(model)
    if kind == "half":
        return m.half().eval()
    with torch.no_grad():
        for t in list(m.parameters()) + list(m.buffers()):
            if t.dtype == torch.float32:
                t.copy_(t.to(torch.float16))
    return m.eval()


def resolve_fp16_reference(model, kind: str) -> str:
    if kind != "auto":
        if kind not in ("half", "rounded"):
            raise ValueError(f"fp16_reference must be auto, half or rounded, got {kind!r}")
        return kind
    n = sum(p.numel() for p in model.parameters())
    return "half" if _device(model).type == "cuda" or n < _HALF_MAX_PARAMS else "rounded"


# -- the report ----------------------------------------------------------------------------------


@dataclass
class OutputParity:
    stage: str
    output: str
    rel_l2: dict[str, float]  # precision -> ONNX Runtime's error vs PyTorch float32
    torch_fp16_rel_l2: float | None = None  # PyTorch's own float16 error (the fp16 yardstick)

    def limit(self, precision: str) -> float:
        if precision == "fp32":
            return FP32_LIMIT
        return max(FP16_FACTOR * (self.torch_fp16_rel_l2 or 0.0), FP32_LIMIT)

    def ok(self, precision: str) -> bool:
        return self.rel_l2[precision] <= self.limit(precision)


@dataclass
class ChainParity:
    precision: str
    iou: list[float]  # per frame, vs PyTorch float32 masks

    @property
    def ok(self) -> bool:
        # FP32 masks should be identical; a pixel whose logit is within float32
        # noise of 0 may flip, hence not exactly 1. FP16 chains are reported only.
        return self.precision != "fp32" or min(self.iou) >= FP32_MIN_IOU


@dataclass
class ParityReport:
    T: int
    precisions: list[str]
    fp16_reference: str
    outputs: list[OutputParity] = field(default_factory=list)
    chains: list[ChainParity] = field(default_factory=list)
    torch_fp16_iou: list[float] | None = None
    onnxruntime: str = ""

    @property
    def ok(self) -> bool:
        return all(o.ok(p) for o in self.outputs for p in self.precisions) and all(c.ok for c in self.chains)

    def failures(self) -> list[str]:
        bad = [f"{o.stage}.{o.output} {p}: rel L2 {o.rel_l2[p]:.2e} > {o.limit(p):.2e}"
               for o in self.outputs for p in self.precisions if not o.ok(p)]
        bad += [f"whole chain {c.precision}: min mask IoU {min(c.iou):.4f} < {FP32_MIN_IOU}" for c in self.chains if not c.ok]
        return bad

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        d["limits"] = {"fp32_rel_l2": FP32_LIMIT, "fp16_factor": FP16_FACTOR, "fp32_min_iou": FP32_MIN_IOU}
        return d

    def lines(self) -> list[str]:
        out = [f"parity vs PyTorch float32 on ONNX Runtime {self.onnxruntime} CPU (T={self.T}, random inputs)"]
        head = f"  {'graph.output':<22}"
        if "fp32" in self.precisions:
            head += f" {'fp32 rel L2':>12} {'(<= ' + format(FP32_LIMIT, '.0e') + ')':>10}"
        if "fp16" in self.precisions:
            head += f" {'fp16 rel L2':>12} {'torch fp16':>11} {'(limit)':>10}"
        out.append(head)
        for o in self.outputs:
            row = f"  {o.stage + '.' + o.output:<22}"
            for p in self.precisions:
                mark = "ok" if o.ok(p) else "FAIL"
                if p == "fp32":
                    row += f" {o.rel_l2[p]:>12.2e} {mark:>10}"
                else:
                    row += f" {o.rel_l2[p]:>12.2e} {o.torch_fp16_rel_l2:>11.2e} {format(o.limit(p), '.1e') + ' ' + mark:>10}"
            out.append(row)
        for c in self.chains:
            out.append(
                f"  whole chain {c.precision}: per-frame mask IoU vs PyTorch fp32 min {min(c.iou):.4f} mean {np.mean(c.iou):.4f}"
                + ("" if c.ok else f"  FAIL (fp32 masks must agree, IoU >= {FP32_MIN_IOU})")
            )
        if self.torch_fp16_iou is not None:
            out.append(f"  (PyTorch fp16 '{self.fp16_reference}' whole chain: min IoU {min(self.torch_fp16_iou):.4f})")
        if "fp16" in self.precisions:
            out.append(f"  fp16 yardstick: PyTorch '{self.fp16_reference}' vs float32; fp16 graphs pass at <= {FP16_FACTOR:g}x its error")
        return out


def parity_report(
    model,
    engine_dir: str | Path,
    *,
    T: int = 2,
    seed: int = 0,
    precisions: list[str] | None = None,
    fp16_reference: str = "auto",
    threads: int | None = None,
) -> ParityReport:
    """Measure every graph in ``engine_dir`` against ``model`` (the float32 reference).
    ``threads``: ONNX Runtime's intra-op threads (default: its own)."""
    import onnxruntime

    from ..backends.onnxruntime_backend import OnnxRuntimeRunner
    from ..artifacts.graph_manifest import read_manifest

    manifest = read_manifest(engine_dir)
    precisions = precisions or manifest.precisions
    model = model.eval()
    cfg = model.config
    clip = random_clip(cfg, T, seed)

    # The float32 chain: each stage's inputs and reference outputs.
    stage_in: dict[str, dict[str, np.ndarray]] = {}
    ref: dict[str, dict[str, np.ndarray]] = {}
    values = dict(clip)
    for stage in STAGE_ORDER:
        stage_in[stage] = {n: values[n] for n in STAGES[stage].input_names}
        ref[stage] = run_reference(model, stage, stage_in[stage])
        values.update(ref[stage])
    S, out_size = cfg.encoder.img_size, cfg.output_size
    ref_masks = logits_to_masks(ref["mask_decoder"]["logits"], (out_size, out_size), mid=S)

    fp16_kind = resolve_fp16_reference(model, fp16_reference)
    report = ParityReport(T=T, precisions=list(precisions), fp16_reference=fp16_kind, onnxruntime=onnxruntime.__version__)
    ref16: dict[str, dict[str, np.ndarray]] = {}
    if "fp16" in precisions:
        m16 = fp16_model(model, fp16_kind)
        ref16 = {s: run_reference(m16, s, stage_in[s], fp16_kind) for s in STAGE_ORDER}
        vals16 = dict(clip)
        for s in STAGE_ORDER:  # PyTorch fp16 end to end, for context
            vals16.update(run_reference(m16, s, {n: vals16[n] for n in STAGES[s].input_names}, fp16_kind))
        report.torch_fp16_iou = mask_iou(logits_to_masks(vals16["logits"], (out_size, out_size), mid=S), ref_masks).tolist()
        del m16

    got: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for p in precisions:
        with OnnxRuntimeRunner(engine_dir, providers=["cpu"], precision=p, check_hashes=False, threads=threads) as runner:
            got[p] = {s: runner.run(s, stage_in[s]) for s in STAGE_ORDER}
            logits = runner.run_clip(clip["image"], clip["log_mel"])
        masks = logits_to_masks(logits, (out_size, out_size), mid=S)
        report.chains.append(ChainParity(p, mask_iou(masks, ref_masks).tolist()))
    for s in STAGE_ORDER:
        for name in STAGES[s].output_names:
            report.outputs.append(
                OutputParity(
                    stage=s,
                    output=name,
                    rel_l2={p: rel_l2(got[p][s][name], ref[s][name]) for p in precisions},
                    torch_fp16_rel_l2=rel_l2(ref16[s][name], ref[s][name]) if ref16 else None,
                )
            )
    return report


def verify_export(model, manifest, *, T: int = 2, fp16_reference: str = "auto", threads: int | None = None,
                  progress=lambda msg: None) -> ParityReport | None:
    """After ``avs-export onnx``: the graphs of ``manifest`` (an export's Manifest) against ``model``, the report
    stored in the manifest. INT8 graphs are not measured here (their export checked them against FP32 by masks,
    a bar of agreement, not float parity). None when only INT8 graphs were written."""
    checked = [p for p in manifest.precisions if p != "int8"]
    if not checked:
        return None
    progress(f"verifying against PyTorch on ONNX Runtime CPU (T={T}) ...")
    report = parity_report(model, manifest.root, T=T, precisions=checked, fp16_reference=fp16_reference, threads=threads)
    manifest.parity = report.to_dict()
    manifest.write(manifest.root)
    return report
