"""avs-batch: segment many videos with a Ray Data job (this machine, or a Ray cluster with --address)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import AvsError
from .common import echo_err
from .options import (CONTEXT, AvsCommand, backend_option, clip_seconds_option, config_option, device_option,
                      engine_dir_option, precision_option, threads_option, version_option, weights_option)

EXIT_INTERRUPTED = 130


class RetryCount(click.ParamType):
    """A whole number of retries, 0 or more; anything else is refused in one line that says so."""

    name = "N"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        text = str(value).strip()
        if not (text.isascii() and text.isdigit()):
            self.fail(f"expected a whole number of retries, 0 or more; got {value!r}", param, ctx)
        return int(text)


def _need_ray(command: str = "avs-batch") -> None:
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise AvsError(f"{command} needs Ray: pip install 'avs-engine[ray]'")


def model_for_ray(command: str, **options):
    """Ray present, the model the options name (its refusals included) and the encoder side S.
    Raises AvsError with one line."""
    from ..backends.model_spec import ModelSpec

    _need_ray(command)
    spec = ModelSpec.choose(**options)
    return spec, spec.img_size()


@click.command(cls=AvsCommand, context_settings=CONTEXT)
@click.argument("sources", nargs=-1, required=True)
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: one sub-folder per video (result.json + masks), failures.jsonl, summary.json. "
                   "Running again into the same folder skips what is done.")
@weights_option("Checkpoint for the torch backend (an avs-engine bundle, or an ST-BAVA state_dict with --config).")
@config_option("Preset (tiny, vit_b, vit_l, vit_h) or a JSON config, for checkpoints that are not bundles.")
@engine_dir_option("ONNX graphs (manifest.json: onnxruntime backend) or TensorRT engines (engines.json: tensorrt backend). "
                   "Default: the bundled demo model's ONNX graphs.")
@backend_option("Which backend the actors run. Default: what the model options imply (as avs-run).")
@device_option("Where the actors compute: cpu, cuda or cuda:N (on a GPU, each actor asks Ray for --gpus-per-actor GPUs).  "
               "[default: cpu; tensorrt: cuda]", default=None)
@precision_option("fp32 or fp16 (onnxruntime: which exported graphs; torch: also bf16).  [default: the backend's]")
@threads_option("ONNX Runtime intra-op threads per actor.  [default on CPU: the actor's share of the cluster's CPUs]")
@clip_seconds_option("Window length in seconds (the model was trained on 5); a shorter video runs with T = its length.")
@click.option("--resize", type=click.Choice(["avsbench", "direct"]), default="avsbench", show_default=True,
              help="avsbench: squash to 224x224 then up, as the training data; direct: straight to the encoder size.")
@click.option("--allow-silent", is_flag=True, help="Run videos without an audio track on silence instead of failing them.")
@click.option("--mask-format", type=click.Choice(["rle", "png"]), default="rle", show_default=True,
              help="rle: every second's mask as COCO RLE in one masks.rle.json per video (docs/scale.md); png: masks/000001.png ...")
@click.option("--overlay/--no-overlay", default=False, show_default=True,
              help="Also write overlay.mp4 per video (decodes and encodes the video once more).")
@click.option("--retry-failed", is_flag=True, help="Run again the videos failures.jsonl lists (by default they are skipped).")
@click.option("--actor-retries", type=RetryCount(), default=2, show_default=True,
              help="Times a batch of videos whose inference actor died (killed, out of memory, a crash in a native "
                   "library) is run again on the restarted actor; videos still lost are run again one at a time with "
                   "as many retries, then recorded in failures.jsonl (stage worker). 0: no retry in either pass.")
@click.option("--address", default=None, metavar="ADDR",
              help="Join this Ray cluster (ray://host:10001, host:6379, or auto for the one this node is in). "
                   "Default: start Ray on this machine.")
@click.option("--actors", type=click.IntRange(1), default=None, metavar="N",
              help="Inference actors.  [default: one per GPU on cuda; one per 4 CPUs on cpu]")
@click.option("--cpus-per-actor", type=click.FloatRange(0, min_open=True), default=None, metavar="F",
              help="Logical CPUs each actor holds (fractions allowed).  [default: the CPUs left after one decode task, shared]")
@click.option("--gpus-per-actor", type=click.FloatRange(0), default=None, metavar="F",
              help="Logical GPUs each actor holds (0.5: two actors share a GPU).  [default: 1 on cuda, 0 on cpu]")
@click.option("--decode-cpus", type=click.FloatRange(0, min_open=True), default=None, metavar="F",
              help="Logical CPUs per decode task.  [default: 1, or 0.5 on fewer than 4 CPUs]")
@click.option("--videos-per-batch", type=click.IntRange(1), default=4, show_default=True,
              help="Videos an actor takes at once; their clips share the encoder batches.")
@click.option("--max-frames", type=click.IntRange(0), default=None, metavar="N",
              help="Frames per batch of clips the runner's run_clips takes (the clips of several videos; torch runs the "
                   "frame-wise stages of a batch together on its device); 0: clip by clip.  [default on CPU: 0 (batches "
                   "buy no speed there); on a GPU: TensorRT the engines' largest T, else 16]")
@click.option("--max-fetch-mb", type=click.FloatRange(0, min_open=True), default=None, metavar="MB",
              help="Largest file fetched from a URL (larger ones fail with one line).  [default: no limit]")
@click.option("--object-store-mb", type=click.IntRange(75), default=None, metavar="MB",
              help="Object store size when Ray starts here.  [default: Ray's, 30%% of memory]")
@click.option("--num-cpus", type=click.IntRange(1), default=None, metavar="N",
              help="CPUs Ray may use when it starts here.  [default: all]")
@click.option("--json", "as_json", is_flag=True, help="Print the closing summary as one JSON document on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@version_option()
def main(sources, out_dir, weights, config, engine_dir, backend, device, precision, threads, clip_seconds, resize,
         allow_silent, mask_format, overlay, retry_failed, actor_retries, address, actors, cpus_per_actor, gpus_per_actor, decode_cpus,
         videos_per_batch, max_frames, max_fetch_mb, object_store_mb, num_cpus, as_json, quiet):
    """Segment the sounding objects of many videos: a Ray Data job, resumable.

    SOURCES are video files, folders (every video inside), quoted glob patterns
    ('clips/**/*.mp4'), URLs (http, https, s3, gs...) and list files (@FILE, or
    FILE.txt / .csv / .parquet: one path or URL per line or row). Decode tasks
    sample one frame per second and compute the log-mel on CPU; a pool of
    inference actors runs the model on clips of several videos at once; writer
    tasks write each video's folder under --out in one rename. A video that
    fails is recorded in --out/failures.jsonl with its one-line reason and the
    job goes on; running the same command again skips finished (and failed)
    videos, so a killed job picks up where it stopped.

    Exit code: 0 no failure, 1 some videos failed, 2 nothing could start, 130
    interrupted. How to run it on a cluster and what to size: docs/scale.md.
    """
    from ..runtime.job import sigterm_as_interrupt

    with sigterm_as_interrupt():
        code = _main(sources, out_dir=out_dir, weights=weights, config=config, engine_dir=engine_dir,
                     backend=backend, device=device, precision=precision, threads=threads, clip_seconds=clip_seconds,
                     resize=resize, allow_silent=allow_silent, mask_format=mask_format, overlay=overlay,
                     retry_failed=retry_failed, actor_retries=actor_retries, address=address,
                     plan_options={"actors": actors, "actor_cpus": cpus_per_actor, "actor_gpus": gpus_per_actor,
                                   "decode_cpus": decode_cpus, "videos_per_batch": videos_per_batch},
                     max_frames=max_frames, max_fetch_mb=max_fetch_mb, object_store_mb=object_store_mb,
                     num_cpus=num_cpus, as_json=as_json, quiet=quiet)
    sys.exit(code)


def _main(sources, *, out_dir, weights, config, engine_dir, backend, device, precision, threads, clip_seconds,
          resize, allow_silent, mask_format, overlay, retry_failed, actor_retries, address, plan_options, max_frames, max_fetch_mb,
          object_store_mb, num_cpus, as_json, quiet) -> int:
    say = (lambda line: None) if quiet and not as_json else (lambda line: click.echo(line, err=True))
    try:
        spec, img_size = model_for_ray("avs-batch", backend=backend, weights=weights, config=config, engine_dir=engine_dir,
                                       device=device, precision=precision, threads=threads)
    except AvsError as e:
        echo_err(str(e))
        return 2
    from ..scale.job import BatchConfig, run_batch, summary_lines
    from ..runtime.outputs import OutputBusy
    from ..scale.resources import ResourceError
    from ..runtime.inputs import expand_inputs

    found = expand_inputs(sources, job=True)
    for note in found.notes:
        say(f"note: {note}")
    for err in found.errors:
        echo_err(err)
    if not found.videos:
        echo_err("no video to run")
        return 2
    cfg = BatchConfig(out_dir=str(out_dir), runner=spec, img_size=img_size, clip_seconds=clip_seconds, resize=resize,
                      allow_silent=allow_silent, mask_format=mask_format, overlay=overlay, max_frames=max_frames,
                      retry_failed=retry_failed, actor_retries=actor_retries, fetch_max_bytes=int(max_fetch_mb * 1e6) if max_fetch_mb else None,
                      plan_options={k: v for k, v in plan_options.items() if v is not None})
    try:
        summary = run_batch(found.videos, cfg, progress=not quiet, address=address,
                            ray_kwargs={"num_cpus": num_cpus, "object_store_mb": object_store_mb, "quiet": True})
    except (OutputBusy, ResourceError) as e:
        echo_err(str(e))
        return 2
    except KeyboardInterrupt:
        click.echo(f"interrupted: finished videos are kept in {out_dir}; run the same command again to go on", err=True)
        return EXIT_INTERRUPTED
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        for line in summary_lines(summary):
            click.echo(line)
    return 1 if summary["videos"]["failed"] or found.errors else 0


if __name__ == "__main__":
    main()
