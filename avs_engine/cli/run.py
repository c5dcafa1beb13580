"""avs-run: segment the sounding objects of each video."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from ..errors import AvsError
from .common import echo_err, make_runner, model_description
from .run_video import run_video


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("videos", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), help="Checkpoint: an avs-engine bundle (.safetensors), or an ST-BAVA state_dict with --config. Default: the bundled demo model.")
@click.option("--config", "config", default=None, help="Preset (tiny, vit_b, vit_l, vit_h) or a JSON config, for checkpoints that are not bundles.")
@click.option("--vggish", type=click.Path(dir_okay=False, path_type=Path), help="torchvggish weights, for checkpoints without audio weights.")
@click.option("--backend", type=click.Choice(["torch", "onnxruntime", "tensorrt"]), default="torch", show_default=True)
@click.option("--engine-dir", type=click.Path(file_okay=False, path_type=Path), help="Graph/engine folder (from avs-export) for the onnxruntime/tensorrt backends.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N (torch and onnxruntime; tensorrt always runs on the GPU, cuda:N picks which).")
@click.option("--dtype", type=click.Choice(["float32", "float16", "bfloat16"]), default="float32", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default=None, help="onnxruntime: which exported graphs to run (default fp32 on CPU, fp16 on a GPU).")
@click.option("--cuda-graph", is_flag=True, help="tensorrt: capture each clip length as a CUDA graph and replay it.")
@click.option("--fused", is_flag=True, help="torch backend: exact fused ST-BAVA block and folded decoder attention; on CUDA also the fused CUDA attention kernels.")
@click.option("-T", "--clip-seconds", type=click.IntRange(1, 64), default=5, show_default=True, help="Window length in seconds (the model was trained on 5).")
@click.option("--resize", type=click.Choice(["avsbench", "direct"]), default="avsbench", show_default=True, help="avsbench: squash to 224x224 then up, as the training data; direct: straight to the encoder size.")
@click.option("--allow-silent", is_flag=True, help="Run videos without an audio track on silence instead of failing.")
@click.option("--overlay/--no-overlay", default=True, show_default=True, help="Write overlay.mp4 (frames tinted by the mask, with the original audio).")
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True, help="Folder holding the numbered run folders.")
@click.option("--name", default="run", show_default=True, help="Run folder name: runs/run, runs/run2, ...")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (all videos) to stdout instead of the human summary.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def main(videos, weights, config, vggish, backend, engine_dir, device, dtype, precision, cuda_graph, fused, clip_seconds, resize, allow_silent, overlay, project, name, as_json, quiet):
    """Segment the sounding objects of each VIDEO, one mask per second.

    For each video, writes masks/000001.png ... (one per second, at the video's
    resolution), overlay.mp4 (with the original audio) and result.json into a
    new numbered run folder. A video that fails gets one error line; the others
    still run; the exit code is non-zero if any failed.
    """
    try:
        if weights is None and backend == "torch" and config is None:
            from .common import default_weights

            weights = default_weights()
        runner = make_runner(backend, weights=weights, config=config, vggish=vggish, engine_dir=engine_dir, device=device, dtype=dtype, fused=fused,
                             precision=precision, cuda_graph=cuda_graph)
        runner.activate()
        if backend == "tensorrt":
            from ..artifacts.engine_manifest import check_clip_length

            # refuse before any decoding; short videos run with T = their length (always <= -T)
            check_clip_length(runner.manifest, clip_seconds)
    except AvsError as e:
        echo_err(str(e))
        sys.exit(2)

    from ..io.rundir import next_run_dir

    run_dir = next_run_dir(project, name)
    model = model_description(runner, weights)
    if not as_json:
        click.echo(f"model: {model['summary']}", err=True)
        for w in getattr(runner, "warnings", []) or []:
            click.echo(f"warning: {w}", err=True)
    results, failed = [], 0
    t0 = time.perf_counter()
    for video in videos:
        try:
            res = run_video(runner, video, run_dir, clip_seconds=clip_seconds, resize=resize, allow_silent=allow_silent,
                            overlay=overlay, model=model, progress=not (quiet or as_json))
            results.append(res)
            if not as_json:
                for w in res["warnings"]:
                    click.echo(f"warning: {video}: {w}", err=True)
                click.echo(f"{video}: {len(res['seconds'])} s segmented; {res['speed_line']}", err=True)
        except AvsError as e:
            failed += 1
            echo_err(str(e))
            results.append({"video": str(video), "error": str(e)})
    elapsed = time.perf_counter() - t0
    if failed == len(videos) and run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()  # nothing succeeded: leave no empty run folder behind
    if as_json:
        click.echo(json.dumps({"run_dir": str(run_dir), "model": model, "elapsed_s": round(elapsed, 3), "videos": results}, indent=2))
    else:
        done = len(videos) - failed
        click.echo(f"{done}/{len(videos)} video(s) done in {elapsed:.1f} s. Results saved to {run_dir}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
