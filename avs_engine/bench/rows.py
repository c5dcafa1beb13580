"""Rows of an avs-bench report: parse ``backend[:precision]``, build and activate the runner.

A row that cannot run here yields a string, ``"not available: <reason>"``,
which the report prints instead of figures.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..backends.base import available_backends
from ..backends.model_spec import PRECISION_ALIASES, PRECISION_DTYPE, ModelSpec
from ..config import resolve
from ..errors import ConfigError
from .proc import child_env, cli_command

REFERENCE = "torch:float32"
PRECISIONS = (*PRECISION_DTYPE.values(), "int8")  # the labels reports use (torch's dtype names)
_DEFAULT_PRECISION = {"torch": "float32", "onnxruntime": "float32", "tensorrt": "float16"}


@dataclass(frozen=True)
class RowSpec:
    """One row of the report, written ``backend[:precision][+fused]``; precision ``fp32``, ``fp16``,
    ``bf16`` (``float32``, ``float16``, ``bfloat16`` too; reports label rows with the latter) or ``int8``
    (onnxruntime: the INT8 graph set, whose stages that missed the export check run float32).

    ``+fused`` (torch only): the exact-algebra ST-BAVA blocks, and on CUDA the
    fused kernels (``TorchRunner(fused=True)``).
    """

    backend: str
    precision: str
    fused: bool = False

    @property
    def label(self) -> str:
        return f"{self.backend}:{self.precision}" + ("+fused" if self.fused else "")

    @classmethod
    def parse(cls, text: str) -> "RowSpec":
        body, plus, variant = text.strip().partition("+")
        if plus and variant != "fused":
            raise ConfigError(f"variant '+{variant}' in '{text}': the only variant is '+fused'")
        name, _, precision = body.partition(":")
        if name not in _DEFAULT_PRECISION:
            raise ConfigError(f"backend '{name}' in '{text}': choose from {', '.join(_DEFAULT_PRECISION)}")
        if plus and name != "torch":
            raise ConfigError(f"'{text}': '+fused' applies to the torch backend only")
        precision = PRECISION_DTYPE.get(precision, precision) or _DEFAULT_PRECISION[name]
        if precision not in PRECISIONS:
            raise ConfigError(f"precision '{precision}' in '{text}': choose from fp32, fp16, bf16, int8")
        if precision == "int8" and name != "onnxruntime":
            raise ConfigError(f"precision 'int8' in '{text}': INT8 ONNX graphs run on the onnxruntime backend only")
        return cls(name, precision, bool(plus))


_ONNX_PRECISION = {"float32": "fp32", "float16": "fp16", "int8": "int8"}  # the graph sets avs-export writes


def _export_graphs(s, workdir: Path, say) -> Path | str:
    """ONNX graphs of the same model (seeded random weights, or ``s.weights``) for the onnxruntime rows.

    Runs ``avs-export onnx`` in a child process, so that its memory is not
    charged to the rows measured here. Returns the folder or why there is none.
    """
    out = workdir / "onnx"
    if (out / "manifest.json").exists():
        return out
    wanted = {_ONNX_PRECISION[r.precision] for r in s.rows if r.backend == "onnxruntime" and r.precision in _ONNX_PRECISION}
    precision = ",".join(p for p in ("fp32", "fp16", "int8") if p in wanted)
    source = ["--weights", str(s.weights)] if s.weights else ["--config", s.preset, "--seed", "0"]
    cmd = cli_command("avs_engine.cli.export", "avs-export", "onnx", *source, "--out", str(out),
                      "--precision", precision, "--no-verify")
    say(f"exporting {precision} ONNX graphs of '{s.preset}' for the onnxruntime rows (avs-export onnx)")
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or res.stdout.strip().splitlines() or ["no message"])[-1]
        return f"not available: exporting the ONNX graphs failed ({last})"
    say(f"exported in {time.perf_counter() - t0:.0f} s")
    return out


def make_runner(spec: RowSpec, s, workdir: Path, say):
    """An activated runner for ``spec`` under the BenchSettings ``s``, or a string: why this row is not available."""
    precision = PRECISION_ALIASES.get(spec.precision, spec.precision)
    if spec.backend == "torch":  # random weights (seed 0) unless --weights: same speed
        model = ModelSpec("torch", weights=str(s.weights) if s.weights else None, config=None if s.weights else s.preset,
                          seed=None if s.weights else 0, fused=spec.fused)
    else:
        reason = available_backends().get(spec.backend, "unknown backend")
        if reason != "ok":
            return reason if reason.startswith("not available") else f"not available: {reason}"
        if spec.backend == "onnxruntime" and spec.precision not in _ONNX_PRECISION:
            return f"not available: ONNX graphs are exported in float32, float16 and int8, not {spec.precision}"
        engine_dir = s.engine_dir
        if engine_dir is None and spec.backend == "onnxruntime" and s.export_missing:
            engine_dir = _export_graphs(s, workdir, say)
            if isinstance(engine_dir, str):
                return engine_dir
        if engine_dir is None:
            return (f"not available: no --engine-dir (graphs for preset '{s.preset}' made by "
                    f"'avs-export onnx'{' and avs-export build' if spec.backend == 'tensorrt' else ''})")
        model = ModelSpec(spec.backend, engine_dir=str(engine_dir))
        precision = precision if spec.backend == "onnxruntime" else None
    runner = model.replace(device=s.device, precision=precision, threads=s.threads or None).create()
    runner.activate()
    if runner.config != resolve(s.preset) and s.weights is None:
        name = runner.config.name
        runner.deactivate()
        return f"not available: {getattr(runner, 'engine_dir', '?')} holds a '{name}' model, not the '{s.preset}' preset"
    return runner
