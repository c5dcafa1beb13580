"""avs-eval: AVSBench mIoU and F-score of a model on a split, for any backend."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import AvsError
from .common import echo_err


def _fmt(x) -> str:
    return "  n/a " if x != x else f"{x:.4f}"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), help="A bundle or checkpoint (default: the bundled demo model).")
@click.option("--config", "config", default=None, help="Preset or JSON config, for checkpoints that are not bundles.")
@click.option("--vggish", type=click.Path(dir_okay=False, path_type=Path), help="torchvggish weights, for checkpoints without audio weights.")
@click.option("--backend", type=click.Choice(["torch", "onnxruntime", "tensorrt"]), default="torch", show_default=True)
@click.option("--engine-dir", type=click.Path(file_okay=False, path_type=Path), help="Graphs/engines (avs-export) for onnxruntime/tensorrt.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32", show_default=True)
@click.option("--generated", "generated", type=int, default=0, help="Score N generated clips of the held-out test seed range (e.g. 300).")
@click.option("--data", "data_root", type=click.Path(file_okay=False, path_type=Path), help="AVSBench folder.")
@click.option("--log-mel", type=click.Choice(["wav", "pickle"]), default="wav", show_default=True, help="AVSBench audio: our log-mel of audio_wav, or the shipped audio_log_mel pickles (read without executing them).")
@click.option("--subset", type=click.Choice(["s4", "ms3"]), default="s4", show_default=True)
@click.option("--split", default="test", show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/cache"), show_default=True, help="Where generated splits are cached.")
@click.option("--limit", type=int, help="Score only the first N videos.")
@click.option("--fusion-variant", type=click.Choice(["full", "no_temporal", "no_audio_update"]), help="torch backend: run the fusion as this ablation (default: what the bundle was trained as).")
@click.option("--threads", type=int, default=0, help="torch CPU threads (0: torch's default; on a busy machine 1 is often fastest).")
@click.option("--json-out", type=click.Path(dir_okay=False, path_type=Path), help="Write the metrics (and per-video scores) here; default: runs/eval*/metrics.json.")
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True)
@click.option("-q", "--quiet", is_flag=True)
def main(weights, config, vggish, backend, engine_dir, device, dtype, generated, data_root, log_mel, subset, split, cache_dir, limit,
         fusion_variant, threads, json_out, project, quiet):
    """Score a model with AVSBench's metrics (sigmoid > 0.5 IoU, where a frame with an
    empty mask scores its predicted-background fraction; F-score with beta^2 = 0.3,
    averaged over a video's frames and maximised over 255 thresholds; at 224x224)
    on an AVSBench split or on generated test clips; print a table, write JSON.

    Generated sets also report the noise-burst seconds alone.
    """
    try:
        from ..train.eval_api import run_eval

        doc = run_eval(weights=weights, config=config, vggish=vggish, backend=backend, engine_dir=engine_dir, device=device,
                       dtype=dtype, generated=generated, data_root=data_root, log_mel=log_mel, subset=subset, split=split, cache_dir=cache_dir,
                       limit=limit, fusion_variant=fusion_variant, threads=threads, progress=not quiet)
    except AvsError as e:
        echo_err(str(e))
        sys.exit(2)
    if json_out is None:
        from ..io.rundir import next_run_dir

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
