"""avs-eval: AVSBench mIoU and F-score of a model on a split, for any backend."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import AvsError
from ..backends.model_spec import PRECISION_ALIASES, ModelSpec
from .common import echo_err
from .options import (CONTEXT, AvsCommand, alias, backend_option, config_option, device_option,
                      engine_dir_option, precision_option, threads_option, version_option, weights_option)


def _fmt(x) -> str:
    return "  n/a " if x != x else f"{x:.4f}"


@click.command(cls=AvsCommand, context_settings=CONTEXT)
@weights_option("A bundle or checkpoint, scored on the torch backend (default: the bundled demo model).")
@config_option("Preset or JSON config, for checkpoints that are not bundles.")
@click.option("--vggish", type=click.Path(dir_okay=False, path_type=Path), help="torch backend: torchvggish weights, for checkpoints without audio weights.")
@engine_dir_option("Graphs from avs-export onnx (onnxruntime backend) or engines from avs-export build (tensorrt backend).")
@backend_option("Which backend runs the model. Default: what the model options imply (--engine-dir: its manifest; "
                   "--weights: torch; no model option: the bundled demo model on onnxruntime).")
@device_option("Where to compute: cpu, cuda or cuda:N.  [default: cpu; tensorrt: cuda]", default=None)
@precision_option("fp32, fp16, bf16 or int8 (torch: the model's dtype; onnxruntime: which exported graphs, int8 on the CPU; "
                  "tensorrt: the engines' own).  [default: fp32; tensorrt the engines' own]", choices=("fp32", "fp16", "bf16", "int8"))
@alias("--dtype", to="precision", type=click.Choice(["float32", "float16", "bfloat16"]), convert=PRECISION_ALIASES.get,
       help="Old spelling of --precision (float32, float16, bfloat16).")
@click.option("--generated", "generated", type=click.IntRange(0), default=0, help="Score N generated clips of the held-out test seed range (e.g. 300).")
@click.option("--data", "data_root", type=click.Path(file_okay=False, path_type=Path), help="AVSBench folder.")
@click.option("--log-mel", type=click.Choice(["wav", "pickle"]), default="wav", show_default=True, help="AVSBench audio: our log-mel of audio_wav, or the shipped audio_log_mel pickles (read without executing them).")
@click.option("--subset", type=click.Choice(["s4", "ms3"]), default="s4", show_default=True, help="AVSBench subset: single source (s4) or multiple sources (ms3).")
@click.option("--split", default="test", show_default=True, help="AVSBench split to score (train, val or test).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/cache"), show_default=True, help="Where generated splits are cached.")
@click.option("--limit", type=click.IntRange(1), help="Score only the first N videos.")
@click.option("--fusion-variant", type=click.Choice(["full", "no_temporal", "no_audio_update"]), help="torch backend: run the fusion as this ablation (default: what the bundle was trained as).")
@threads_option()
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), help="Write the metrics (and per-video scores) here; default: runs/eval*/metrics.json.")
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True, help="Folder holding the numbered eval folders (runs/eval, runs/eval2, ...).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@version_option()
def main(weights, config, vggish, engine_dir, backend, device, precision, generated, data_root, log_mel, subset, split, cache_dir, limit,
         fusion_variant, threads, json_out, project, quiet):
    """Score a model with AVSBench's metrics (sigmoid > 0.5 IoU, where a frame with an
    empty mask scores its predicted-background fraction; F-score with beta^2 = 0.3,
    averaged over a video's frames and maximised over 255 thresholds; at 224x224)
    on an AVSBench split or on generated test clips; print a table, write JSON.

    Generated sets also report the noise-burst seconds alone.
    """
    try:
        spec = ModelSpec.choose(backend=backend, weights=weights, config=config, engine_dir=engine_dir, vggish=vggish,
                                device=device, precision=precision, threads=threads, fusion_variant=fusion_variant)
        from ..train.eval_api import run_eval

        runner = spec.create().activate()
        doc = run_eval(runner, model=spec.describe(runner), generated=generated, data_root=data_root, log_mel=log_mel,
                       subset=subset, split=split, cache_dir=cache_dir, limit=limit, progress=not quiet)
    except AvsError as e:
        echo_err(str(e))
        sys.exit(2)
    if json_out is None:
        from ..runtime.outputs import next_run_dir

        json_out = next_run_dir(project, "eval") / "metrics.json"
    json_out.parent.mkdir(parents=True, exist_ok=True)
    json_out.write_text(json.dumps(doc, indent=2))
    click.echo(f"model: {doc['model']['summary']}")
    click.echo(f"data:  {doc['data']}")
    click.echo(f"{'':<14}{'mIoU':>8}{'F-score':>9}{'videos':>8}{'frames':>8}")
    for key, label in (("all", "all seconds"), ("burst", "noise bursts")):
        s = doc["metrics"][key]
        if s["videos"]:
            click.echo(f"{label:<14}{_fmt(s['miou']):>8}{_fmt(s['f_score']):>9}{s['videos']:>8}{s['frames']:>8}")
    click.echo(f"Results saved to {json_out}")


if __name__ == "__main__":
    main()
