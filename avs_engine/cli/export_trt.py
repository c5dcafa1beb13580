"""``avs-export build`` and ``avs-export check``: TensorRT engines from the ONNX graphs, and how far they are from them.

Two standalone click commands; ``avs_engine.cli.export`` registers them in the
``avs-export`` group (``main.add_command(build_cmd)``, ``main.add_command(check_cmd)``).
Exit codes: 0 done / pass, 1 check failed, 2 bad input or missing tool, 3 check incomplete
(TensorRT or a GPU missing: only the ONNX Runtime side ran).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import AvsError
from .common import echo_err
from .options import (CLIP_SECONDS, CONTEXT, AvsCommand, alias, clip_seconds_option, config_option, device_index, device_option,
                      precision_option, version_option, weights_option)

EXIT_FAIL, EXIT_USAGE, EXIT_INCOMPLETE = 1, 2, 3


@click.command("build", cls=AvsCommand, context_settings=CONTEXT)
@click.option("--onnx-dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder written by avs-export onnx (manifest.json + graphs).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the engines and engines.json  [default: ONNX_DIR/tensorrt]")
@precision_option("What the engines compute in: fp16 (the FP16 graphs, strongly typed) or fp32 (the FP32 graphs).",
                  default="fp16", choices=("fp16", "fp32"), legacy={"fp16-weak": "fp16 --weak-typing"})
@click.option("--weak-typing", is_flag=True, help="With --precision fp16 (TensorRT 10 only): build the FP32 graphs with TensorRT's "
              "FP16 flag and the float32 islands pinned, instead of the strongly typed FP16 graphs.")
@click.option("--min-t", type=int, default=1, show_default=True, help="Shortest clip (frames) the engines accept.")
@click.option("--opt-t", type=int, default=5, show_default=True, help="Clip length TensorRT tunes for.")
@click.option("--max-t", type=int, default=8, show_default=True, help="Longest clip (frames) the engines accept.")
@click.option("--workspace-gb", type=float, default=8.0, show_default=True, help="TensorRT workspace limit (GiB).")
@click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Timing cache file, read before and written after every engine  [default: OUT/timing.cache]")
@device_option("GPU to build for: cuda or cuda:N.", default="cuda")
@click.option("--force", is_flag=True, help="Rebuild engines that are already up to date.")
@weights_option("Export the graphs first (into --onnx-dir) from these weights when the folder has no manifest.json.")
@config_option("Preset or JSON config for --weights checkpoints that are not bundles.")
@click.option("--seed", type=int, default=None, help="Export from random weights with this seed (tests only).")
@click.option("-v", "--verbose", is_flag=True, help="TensorRT's full log.")
@version_option()
def build_cmd(onnx_dir, out, precision, weak_typing, min_t, opt_t, max_t, workspace_gb, timing_cache, device, force, weights, config, seed,
              verbose):
    """Build TensorRT engines (one per graph; fp16 by default, or fp32) from an avs-export onnx folder.

    Each graph gets one optimisation profile with T (frames per clip) from
    --min-t to --max-t, tuned for --opt-t. The engines, TensorRT's timing cache
    and engines.json (graph hashes, TensorRT version, GPU, T range, precision)
    go to --out. Engines are tied to this GPU model and TensorRT version;
    avs-run --backend tensorrt refuses others with the command to rebuild.
    Engines already built from the same graphs with the same settings are kept
    (--force rebuilds them). Needs TensorRT 10.x or 11.x, cuda-python and a GPU.
    """
    from ..artifacts.profiles import TRange

    if precision == "fp16-weak":  # the old spelling of --precision fp16 --weak-typing
        precision, weak_typing = "fp16", True
    if weak_typing and precision != "fp16":
        echo_err("--weak-typing applies to --precision fp16 (it builds the FP32 graphs with TensorRT's FP16 flag)")
        sys.exit(EXIT_USAGE)
    if device == "cpu":
        echo_err("--device cpu: TensorRT engines are built on a GPU (--device cuda or cuda:N)")
        sys.exit(EXIT_USAGE)
    try:
        t_range = TRange(min_t, opt_t, max_t).validate()
        if not workspace_gb > 0:
            raise click.BadParameter(f"must be positive, got {workspace_gb}", param_hint="--workspace-gb")
        if (weights is not None or seed is not None) and not (onnx_dir / "manifest.json").is_file():
            _export_first(onnx_dir, weights, config, seed)
        from ..export.tensorrt_build import build_engines

        build_engines(onnx_dir, out, precision="fp16-weak" if weak_typing else precision, t_range=t_range, workspace_gb=workspace_gb,
                      timing_cache=timing_cache, force=force, device=device_index(device), verbose=verbose, progress=click.echo)
    except click.BadParameter:
        raise
    except (AvsError, OSError) as e:
        echo_err(str(e))
        sys.exit(EXIT_USAGE)


def _export_first(onnx_dir: Path, weights, config, seed) -> None:
    """avs-export onnx --precision both into ``onnx_dir`` (needs torch)."""
    try:
        from ..export.onnx_export import export_onnx, load_for_export
    except ModuleNotFoundError as e:
        raise AvsError(f"exporting the graphs first needs {e.name}: pip install 'avs-engine[export]' "
                       f"(or run avs-export onnx --out {onnx_dir} elsewhere)") from None
    model, checkpoint = load_for_export(config, weights, seed=seed)
    click.echo(f"no graphs in {onnx_dir}: exporting {model.config.name} first")
    export_onnx(model, onnx_dir, precision="both", checkpoint=checkpoint, progress=click.echo)


@click.command("check", cls=AvsCommand, context_settings=CONTEXT)
@click.option("--onnx-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The ONNX folder  [default: the one engines.json names]")
@click.option("--engine-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The engine folder  [default: ONNX_DIR/tensorrt]")
@clip_seconds_option("Clip length T of the check.  [default: the engines' --opt-t]", default=None)
@alias("--frames", to="clip_seconds", type=CLIP_SECONDS, help="Old spelling of -T/--clip-seconds.")
@click.option("--reference", type=click.Choice(["fp32", "same"]), default="fp32", show_default=True,
              help="ONNX graphs to compare with: the FP32 ones, or those the engines were built from.")
@click.option("--provider", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="ONNX Runtime execution provider.")
@click.option("--rtol", multiple=True, metavar="[OUTPUT:]X", help="Relative tolerance, for all outputs or one (a128, enc, dense, sparse, "
              "logits), as Polygraphy writes it: 0.01 or enc:0.05; repeatable.")
@click.option("--atol", multiple=True, metavar="[OUTPUT:]X", help="Absolute tolerance, as --rtol (0.001 or logits:0.01).")
@click.option("--min-iou", type=click.FloatRange(0, 1), default=0.9, show_default=True, help="Lowest per-frame mask IoU of the chain.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random input clip.")
@device_option("GPU of the engines: cuda or cuda:N.", default="cuda")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@version_option()
def check_cmd(onnx_dir, engine_dir, clip_seconds, reference, provider, rtol, atol, min_iou, seed, device, as_json):
    """Compare the TensorRT engines with the ONNX graphs (Polygraphy, ONNX Runtime vs TensorRT).

    Per graph and output: relative L2 error, max and mean absolute difference,
    and a pass/fail against per-output tolerances; then the whole chain, run
    as avs-run runs it, by per-frame mask IoU. Without TensorRT or a GPU the
    ONNX Runtime side still runs and the report says what did not. Exit code
    0 pass, 1 fail, 2 bad input, 3 incomplete (TensorRT side not run).
    """
    import json

    if device == "cpu":
        echo_err("--device cpu: the engines run on a GPU (--device cuda or cuda:N)")
        sys.exit(EXIT_USAGE)
    try:
        from ..checks.trt_check import parse_tolerances, run_check

        report = run_check(onnx_dir, engine_dir, T=clip_seconds, reference=reference, provider=provider,
                           rtol=parse_tolerances(rtol, "rtol"), atol=parse_tolerances(atol, "atol"),
                           min_iou=min_iou, seed=seed, device=device_index(device), progress=lambda m: None if as_json else click.echo(m))
    except (AvsError, OSError) as e:
        echo_err(str(e))
        sys.exit(EXIT_USAGE)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)
    if report.failures():
        sys.exit(EXIT_FAIL)
    if not report.complete:
        echo_err(f"TensorRT side not run: {report.skipped}")
        sys.exit(EXIT_INCOMPLETE)
