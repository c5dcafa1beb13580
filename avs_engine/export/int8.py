"""FP32 ONNX -> INT8 ONNX with ONNX Runtime's quantization tooling (docs/graphs.md, "INT8 graphs").

Each graph gets an :class:`Int8Plan`: which op types are quantized, whether
only products with a weight operand are, which modules (by the exporter's
name scopes) stay float32, and how: ``blockwise`` (``MatMulNBitsQuantizer``
with 8 bits: int8 weights in blocks of ``block_size`` input channels, each
with its own scale, and ``accuracy_level=4``: ONNX Runtime quantizes the
activations to int8 per block inside the kernel and multiplies in integers),
``dynamic`` (``quantize_dynamic``: per-channel int8 weights, one activation
scale per tensor computed at run time, ``DynamicQuantizeLinear`` +
``MatMulInteger``) or ``static`` (``quantize_static``, QDQ format, activation
scales calibrated on generated clips). What is not named by the plan stays
float32: LayerNormalization, Softmax, GELU, the reductions, and every
activation-by-activation product.

The plans in ``PLANS`` were chosen by measurement (``benchmarks/int8_choice.py``,
report in ``benchmarks/int8_choice.md``): per graph, relative L2 error
against FP32, per-frame mask IoU of the chain with that graph swapped in, and
time against FP32, on the bundled demo model and on vit_b.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import onnx

from .graph_entries import external_data_locations

METHODS = ("blockwise", "dynamic", "static", "fp32")
SCOPES_KEY = "pkg.torch.onnx.name_scopes"


@dataclass(frozen=True)
class Int8Plan:
    """What to quantize in one graph.

    ``method``: ``blockwise`` (MatMulNBits, 8-bit weight blocks, int8 compute), ``dynamic``
    (activation scales at run time), ``static`` (calibrated scales, QDQ) or ``fp32`` (the graph
    stays float32). ``block_size``: input channels per weight scale (``blockwise``).
    ``op_types``: ONNX op types to quantize (``MatMul``, ``Gemm``, ``Conv``).
    ``weights_only``: only nodes with a constant (weight) operand; the attention's
    activation-by-activation products stay float32.
    ``exclude_scopes``: module paths (e.g. ``mask_decoder.output_hypernetworks_mlps``)
    whose nodes stay float32, matched against the exporter's name scopes.
    ``why``: the measurement behind the plan, one line, for the manifest.
    """

    method: str = "dynamic"
    op_types: tuple[str, ...] = ("MatMul",)
    weights_only: bool = True
    exclude_scopes: tuple[str, ...] = ()
    per_channel: bool = True
    reduce_range: bool = False
    block_size: int = 128
    why: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


# Chosen by measurement (benchmarks/int8_choice.md: error, mask IoU and time of every candidate on the
# demo model and on vit_b; benchmarks/int8_speed.md: the chosen set against FP32, alternating runs).
HEAD_SCOPES = ("mask_decoder.output_hypernetworks_mlps", "mask_decoder.iou_prediction_head", "mask_decoder.output_upscaling")
PLANS: dict[str, Int8Plan] = {
    # Convolutions and Gemms: ONNX Runtime's integer Conv ran 0.1x the float one here (demo and
    # VGGish), dynamic quantization has no integer Gemm, and the stage is ~1% of a clip.
    "audio": Int8Plan(method="fp32", op_types=(),
                      why="integer Conv measured 0.1x float Conv on this CPU; no dynamic integer Gemm; ~1% of a clip"),
    # The weight MatMuls (qkv, proj, MLP: 72 on vit_b). Quantizing the 24 attention products too
    # made the demo encoder's error 4.5x larger (3.2e-3 -> 1.5e-2) for a gain lost in the noise here.
    "image_encoder": Int8Plan(method="dynamic", op_types=("MatMul",), weights_only=True,
                              why="weight MatMuls; the attention's activation products stay fp32 (4.5x the error on the demo)"),
    # The MLPs and projections over T*N tokens; the folded attention's products stay float32.
    "fusion": Int8Plan(method="dynamic", op_types=("MatMul",), weights_only=True,
                       why="weight MatMuls over T*N tokens; the attention products stay fp32"),
    # The two-way transformer's weight MatMuls. The output head (hypernetwork MLPs, IoU head,
    # upscaling) turns 7 tokens into the mask: small products, large effect; it stays float32.
    "mask_decoder": Int8Plan(method="dynamic", op_types=("MatMul",), weights_only=True, exclude_scopes=HEAD_SCOPES,
                             why="weight MatMuls of the two-way transformer; the output head stays fp32"),
}


@dataclass
class NodeSelection:
    """Which nodes of a graph a plan quantizes, and which candidate nodes it keeps float32 and why."""

    quantize: list[str] = field(default_factory=list)
    quantized_by_type: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)  # reason -> number of nodes

    def summary(self) -> dict:
        return {"quantized": dict(self.quantized_by_type), "kept_fp32": dict(self.kept)}


QUANTIZABLE = ("MatMul", "Gemm", "Conv", "ConvTranspose", "Einsum")
# What ONNX Runtime's tool can quantize, per method (its IntegerOpsRegistry / QDQRegistry,
# restricted to the multiply-heavy ops): dynamic quantization has no integer Gemm.
SUPPORTED = {"blockwise": ("MatMul",), "dynamic": ("MatMul", "Conv"), "static": ("MatMul", "Gemm", "Conv", "ConvTranspose"),
             "fp32": ()}


def _scopes(node: onnx.NodeProto) -> str:
    for p in node.metadata_props:
        if p.key == SCOPES_KEY:
            return p.value
    return ""


def select_nodes(model: onnx.ModelProto, plan: Int8Plan) -> NodeSelection:
    """The nodes ``plan`` quantizes in ``model``; every other multiply-heavy node is counted with its reason."""
    consts = {t.name for t in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    sel = NodeSelection()

    def keep(reason: str) -> None:
        sel.kept[reason] = sel.kept.get(reason, 0) + 1

    for n in model.graph.node:
        if n.op_type not in QUANTIZABLE:
            continue
        has_weight = any(i in consts for i in n.input[:2])
        scope = _scopes(n)
        excluded = next((s for s in plan.exclude_scopes if s in scope), None)
        if plan.method == "fp32":
            keep(f"{n.op_type}: the whole graph stays float32")
        elif n.op_type not in plan.op_types:
            keep(f"{n.op_type}: op type not quantized")
        elif n.op_type not in SUPPORTED[plan.method]:
            keep(f"{n.op_type}: no {plan.method} integer kernel in ONNX Runtime")
        elif (plan.weights_only or plan.method == "blockwise") and not has_weight:
            keep(f"{n.op_type}: activation x activation (attention)")
        elif excluded:
            keep(f"{n.op_type}: in {excluded}")
        else:
            sel.quantize.append(n.name)
            sel.quantized_by_type[n.op_type] = sel.quantized_by_type.get(n.op_type, 0) + 1
    return sel


class _Feeds:
    """``onnxruntime.quantization.CalibrationDataReader`` over a list of input dicts."""

    def __init__(self, feeds: Sequence[Mapping[str, np.ndarray]]) -> None:
        self._it = iter(list(feeds))

    def get_next(self):
        return next(self._it, None)

    def rewind(self) -> None:  # some ORT versions call it; one pass is all we give
        pass


def quantize_graph(
    src: str | Path,
    dst: str | Path,
    plan: Int8Plan,
    *,
    calibration: Sequence[Mapping[str, np.ndarray]] | None = None,
) -> NodeSelection:
    """Write the INT8 version of the FP32 graph ``src`` to ``dst`` following ``plan``.

    ``calibration`` (``static`` only): the graph's input dicts (float32, the FP32 chain's
    stage inputs on generated clips) from which activation ranges are taken.
    Returns what was quantized and what stayed float32. A plan that quantizes
    nothing writes nothing and returns the selection (the caller keeps FP32).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    if plan.method not in METHODS:
        raise ValueError(f"unknown int8 method {plan.method!r}")
    model = onnx.load(str(src), load_external_data=False)
    sel = select_nodes(model, plan)
    if not sel.quantize:
        return sel
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    for old in dst.parent.glob(dst.name + "*"):
        old.unlink()
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    common = dict(op_types_to_quantize=list(plan.op_types), per_channel=plan.per_channel, reduce_range=plan.reduce_range,
                  nodes_to_quantize=sel.quantize, use_external_data_format=external,
                  # the tool's dynamic default skips activation x activation MatMuls whatever the node list says
                  extra_options={"MatMulConstBOnly": plan.weights_only})
    log = logging.getLogger()
    level, handlers = log.level, list(log.handlers)
    log.setLevel(logging.ERROR)  # the tool logs a line per node and a pre-processing hint
    try:
        with _linked_copy(Path(src), external_data_locations(model), dst.parent) as src_link:
            if plan.method == "blockwise":
                _blockwise(model, src_link, dst, plan, sel, external)
            elif plan.method == "dynamic":
                quantize_dynamic(str(src_link), str(dst), weight_type=QuantType.QInt8, **common)
            else:
                if not calibration:
                    raise ValueError("static int8 needs calibration inputs")
                quantize_static(str(src_link), str(dst), _Feeds(calibration), quant_format=QuantFormat.QDQ,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                                calibrate_method=CalibrationMethod.MinMax, **common)
    finally:
        # the nbits quantizer's module calls logging.basicConfig(level=INFO) on import: undo it
        log.setLevel(level)
        for h in log.handlers[:]:
            if h not in handlers:
                log.removeHandler(h)
    onnx.checker.check_model(str(dst))
    return sel


@contextlib.contextmanager
def _linked_copy(src: Path, data_locations: Iterable[str], near: Path):
    """``src`` (and its external-data files, ``data_locations`` relative to its folder) as links in a temporary folder under ``near``. ONNX Runtime's
    quantizer writes a shape-inferred copy of its input next to it; this keeps that file out of the FP32
    graphs' folder (which may be read-only, and must not be left a stray file by a killed run)."""
    folder = Path(tempfile.mkdtemp(prefix=".quantize-", dir=near))
    try:
        link = folder / src.name
        link.symlink_to(src.resolve())
        for location in data_locations:
            (folder / location).symlink_to((src.parent / location).resolve())
        yield link
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _blockwise(model: onnx.ModelProto, src, dst: Path, plan: Int8Plan, sel: NodeSelection, external: bool) -> None:
    """MatMulNBits with 8-bit symmetric weight blocks and int8 compute (accuracy level 4) on the selected MatMuls."""
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    if external:
        model = onnx.load(str(src))
    chosen = set(sel.quantize)
    # the quantizer takes every MatMul of its op types unless excluded: exclude the rest
    exclude = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in chosen]
    config = DefaultWeightOnlyQuantConfig(block_size=plan.block_size, is_symmetric=True, accuracy_level=4, bits=8,
                                          op_types_to_quantize=("MatMul",))
    q = MatMulNBitsQuantizer(model, bits=8, block_size=plan.block_size, is_symmetric=True, accuracy_level=4,
                             nodes_to_exclude=exclude, algo_config=config)
    q.process()
    q.model.save_model_to_file(str(dst), use_external_data_format=external)


def op_counts(path: str | Path, op_types: Iterable[str] | None = None) -> dict[str, int]:
    """op type -> number of nodes in the graph at ``path`` (for reports)."""
    m = onnx.load(str(path), load_external_data=False)
    out: dict[str, int] = {}
    for n in m.graph.node:
        if op_types is None or n.op_type in op_types:
            out[n.op_type] = out.get(n.op_type, 0) + 1
    return out
