"""avs-export: write the deployment graphs of an ST-BAVA model."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from ..errors import AvsError
from .common import echo_err
from .options import (CLIP_SECONDS, CONTEXT, AvsGroup, alias, clip_seconds_option, config_option, precision_option, threads_option,
                      version_option, weights_option)


@contextlib.contextmanager
def _bad_input_exits_2(command: str, install: str):
    """A missing package or bad input (AvsError, OSError): one line on stderr, exit code 2."""
    try:
        yield
    except ModuleNotFoundError as e:
        echo_err(f"avs-export {command} needs {e.name}: pip install {install}")
        sys.exit(2)
    except (AvsError, OSError) as e:
        echo_err(str(e))
        sys.exit(2)


@click.group(cls=AvsGroup, context_settings=CONTEXT)
@version_option()
def main():
    """Export ST-BAVA for deployment.

    \b
    avs-export onnx   the four ONNX graphs (FP32, FP16 and/or INT8) + manifest + parity report
    avs-export int8   add the INT8 set to an existing export (no PyTorch, no export again)
    avs-export build  TensorRT engines (fp16 or fp32) from those graphs (needs TensorRT and a GPU)
    avs-export check  ONNX Runtime vs the TensorRT engines, per graph and by mask IoU
    """


@main.command("onnx", context_settings=CONTEXT)
@config_option("Preset (tiny, vit_b, vit_l, vit_h) or a JSON config; needed for checkpoints that are not bundles.")
@weights_option("An avs-engine bundle (.safetensors) or a checkpoint (with --config).")
@click.option("--vggish", type=click.Path(dir_okay=False, path_type=Path), help="torchvggish weights, for checkpoints without audio weights.")
@click.option("--allow-missing-fusion", is_flag=True, help="Accept SAMA-AVS/SAM checkpoints; the missing parts keep a random init.")
@click.option("--seed", type=int, default=None, help="Random weights with this seed instead of --weights (tests and benchmarks only).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Folder for the graphs and manifest.json.")
@precision_option("Which graphs to write, comma-separated: fp32, fp16 (float16 with float32 islands), int8 (for CPUs: "
                  "int8 weight products where they pass the check against fp32, fp32 elsewhere) or both (fp32,fp16).",
                  default="fp32,fp16", choices=("fp32", "fp16", "int8"), multiple=True, legacy={"both": "fp32,fp16"})
@click.option("--opset", type=int, default=20, show_default=True, help="ONNX opset (18 or newer).")
@click.option("--verify/--no-verify", default=True, show_default=True, help="Measure parity against PyTorch on ONNX Runtime CPU and print the report.")
@clip_seconds_option("Clip length T of the parity check.", default=2)
@alias("--verify-frames", to="clip_seconds", type=CLIP_SECONDS, help="Old spelling of -T/--clip-seconds.")
@threads_option()
@version_option()
@click.option("--int8-clips", type=click.IntRange(1), default=2, show_default=True,
              help="int8: generated clips (of -T seconds) on which each INT8 graph is checked against its FP32 graph.")
@click.option("--int8-min-iou", type=click.FloatRange(0, 1), default=0.98, show_default=True,
              help="int8: a graph ships in INT8 only if the chain with it swapped in keeps a median per-frame mask IoU "
                   "against FP32 of at least this; otherwise its stage stays FP32 (the manifest says so).")
@click.option("--fp16-reference", type=click.Choice(["auto", "half", "rounded"]), default="auto", show_default=True,
              help="PyTorch fp16 yardstick: the model in float16, or float32 kernels with float16 rounding (fast on CPU).")
def onnx_cmd(config, weights, vggish, allow_missing_fusion, seed, out, precision, opset, verify, clip_seconds, threads, int8_clips,
             int8_min_iou, fp16_reference):
    """Export the four graphs (audio, image_encoder, fusion, mask_decoder) to ONNX.

    Writes OUT/fp32/*.onnx, OUT/fp16/*.onnx (float16 with float32 islands)
    and/or OUT/int8/*.onnx with the clip length T dynamic, and OUT/manifest.json
    (config, checkpoint hash, graph hashes, I/O, precision, opset, tool
    versions), then, with --verify, prints each graph's error against PyTorch
    and the whole chain's mask IoU. INT8 graphs are checked against the FP32
    graphs on generated clips, one line per stage; a stage whose INT8 graph
    misses --int8-min-iou runs FP32 in the int8 set. Exit code 2 for bad input,
    1 when parity fails.
    """
    with _bad_input_exits_2("onnx", "'avs-engine[export]'"):
        from ..checks.int8_check import int8_inputs
        from ..checks.onnx_parity import verify_export
        from ..export.onnx_export import check_options, export_onnx, load_for_export, precision_set

        precision = export_precision(precision)
        check_options(precision, opset)
        if threads:
            import torch

            torch.set_num_threads(threads)
        model, checkpoint = load_for_export(config, weights, vggish, allow_missing_fusion=allow_missing_fusion, seed=seed)
        click.echo(f"model: {model.config.name} ({checkpoint.get('summary', '')}) -> {out}")
        int8 = (int8_inputs(model.config, clips=int8_clips, T=clip_seconds, min_iou=int8_min_iou)
                if "int8" in precision_set(precision) else {})
        result = export_onnx(model, out, precision=precision, opset=opset, checkpoint=checkpoint, progress=click.echo,
                             threads=threads, **int8)
        report = verify_export(model, result.manifest, T=clip_seconds, fp16_reference=fp16_reference, threads=threads,
                               progress=click.echo) if verify else None
    if report is not None:
        for line in report.lines():
            click.echo(line)
        if not report.ok:
            echo_err(f"parity check failed ({'; '.join(report.failures())}); graphs left in {out}")
            sys.exit(1)
    click.echo(f"graphs and manifest saved to {out}")


@main.command("int8", context_settings=CONTEXT)
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@clip_seconds_option("Clip length T of the generated clips the INT8 graphs are checked on.", default=2)
@click.option("--clips", type=click.IntRange(1), default=2, show_default=True,
              help="Generated clips (of -T seconds) on which each INT8 graph is checked against its FP32 graph.")
@click.option("--min-iou", type=click.FloatRange(0, 1), default=0.98, show_default=True,
              help="A graph ships in INT8 only if the chain with it swapped in keeps a median per-frame mask IoU "
                   "against FP32 of at least this; otherwise its stage stays FP32 (the manifest says so).")
@threads_option()
@version_option()
def int8_cmd(folder, clip_seconds, clips, min_iou, threads):
    """Add the INT8 set to an existing export, without PyTorch or a second export.

    FOLDER is an avs-export onnx folder with FP32 graphs; the INT8 set is
    written into it (FOLDER/int8/ and the manifest's int8 set), replacing an
    earlier one. Run it with avs-run --precision int8 --engine-dir FOLDER.

    Each FP32 graph is quantized (int8 weight products, for CPUs) and checked
    against the FP32 chain on generated clips, one line per stage, exactly as
    avs-export onnx --precision fp32,int8 does; a stage whose INT8 graph misses
    --min-iou runs its FP32 graph in the int8 set. Needs onnx and onnxruntime,
    not PyTorch. Exit code 2 for bad input.
    """
    with _bad_input_exits_2("int8", "'avs-engine[ort]' onnx"):
        from ..checks.int8_check import int8_inputs
        from ..artifacts.graph_manifest import read_manifest
        from ..export.int8_add import add_int8_set

        config = read_manifest(folder, check_hashes=False).model_config()
        click.echo(f"model: {config.name} -> int8 set in {folder}")
        given = int8_inputs(config, clips=clips, T=clip_seconds, min_iou=min_iou)
        add_int8_set(folder, calibration=given["int8_calibration"], check=given["int8_check"], threads=threads,
                     progress=click.echo)
    click.echo(f"int8 set saved to {folder}")


def export_precision(precision) -> str:
    """``--precision`` of avs-export onnx (a tuple of fp32/fp16/int8, or the old ``both``) -> what export_onnx
    takes: ``both`` for fp32+fp16 (as before), else the comma-separated set."""
    wanted = set()
    for p in (precision if isinstance(precision, tuple) else (precision,)):
        wanted |= {"fp32", "fp16"} if p == "both" else {p}
    if wanted == {"fp32", "fp16"}:
        return "both"
    return ",".join(p for p in ("fp32", "fp16", "int8") if p in wanted)


def _register_tensorrt_commands() -> None:
    from .export_trt import build_cmd, check_cmd

    main.add_command(build_cmd, "build")
    main.add_command(check_cmd, "check")


_register_tensorrt_commands()


if __name__ == "__main__":
    main()
