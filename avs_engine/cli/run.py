"""avs-run: segment the sounding objects of each video."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ..errors import AvsError
from ..backends.model_spec import PRECISION_ALIASES, ModelSpec
from .common import echo_err, quote_path
from .options import (CONTEXT, AvsCommand, alias, backend_option, clip_seconds_option, compile_option,
                      config_option, device_option, engine_dir_option, precision_option, tf32_option, threads_option,
                      version_option, weights_option)

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


def untrusted_media(ctx: click.Context, on: bool) -> None:
    """``--untrusted``: the strict open policy for this command's whole run (and only for it)."""
    if on:
        from ..io import open_policy

        open_policy.strict_everywhere(True)
        ctx.call_on_close(lambda: open_policy.strict_everywhere(False))


@click.command(cls=AvsCommand, context_settings=CONTEXT)
@click.argument("videos", nargs=-1, required=True)
@weights_option("Checkpoint: an avs-engine bundle (.safetensors), or an ST-BAVA state_dict with --config; runs on the torch backend.")
@config_option("Preset (tiny, vit_b, vit_l, vit_h) or a JSON config, for checkpoints that are not bundles.")
@click.option("--vggish", type=click.Path(dir_okay=False, path_type=Path), help="torch backend: torchvggish weights, for checkpoints without audio weights.")
@engine_dir_option("Graphs from avs-export onnx (manifest.json: onnxruntime backend) or engines from avs-export build (engines.json: tensorrt backend).")
@backend_option("Which backend runs the model. Default: what the model options imply (--engine-dir: its manifest; "
                   "--weights: torch; no model option: the bundled demo model on onnxruntime).")
@device_option("Where to compute: cpu, cuda or cuda:N (tensorrt always runs on a GPU; cuda:N picks which).  [default: cpu; tensorrt: cuda]",
               default=None)
@precision_option("fp32, fp16, bf16 or int8. torch: the model's dtype; onnxruntime: which exported graphs run (fp32, fp16, "
                  "or int8 on the CPU: graphs from avs-export onnx --precision int8, result.json says which stages run int8); "
                  "tensorrt: must be what the engines were built in.  [default: torch fp32; onnxruntime fp32 on CPU, fp16 on a GPU; "
                  "tensorrt the engines' own]", choices=("fp32", "fp16", "bf16", "int8"))
@alias("--dtype", to="precision", type=click.Choice(["float32", "float16", "bfloat16"]), convert=PRECISION_ALIASES.get,
       help="Old spelling of --precision (float32, float16, bfloat16).")
@click.option("--fused", is_flag=True, help="torch backend: exact fused ST-BAVA block and folded decoder attention; on CUDA with compute "
              "capability 8.0 or newer also the fused CUDA attention kernels (older GPUs: the PyTorch forms, with a warning; "
              "not yet run on a GPU). The global attention keeps the model's precision unless --global-attention-precision says otherwise.")
@click.option("--global-attention-precision", type=click.Choice(["fp32", "fp16", "bf16"]), default=None,
              help="torch --fused on CUDA: the precision of the SAM encoder's global attention. fp16/bf16 run it on the flash "
                   "kernel; fp32 keeps PyTorch's attention (the kernel has no fp32 form). An fp16/bf16 model computes it in its "
                   "own precision.  [default: the model's precision (--precision)]")
@tf32_option()
@compile_option()
@click.option("--cuda-graph", is_flag=True, help="tensorrt backend: capture each clip length as a CUDA graph and replay it.")
@clip_seconds_option("Window length in seconds (the model was trained on 5); a shorter video runs with T = its length.")
@threads_option()
@click.option("--resize", type=click.Choice(["avsbench", "direct"]), default="avsbench", show_default=True, help="avsbench: squash to 224x224 then up, as the training data; direct: straight to the encoder size.")
@click.option("--allow-silent", is_flag=True, help="Run videos without an audio track on silence instead of failing.")
@click.option("--untrusted", is_flag=True, expose_value=False, callback=lambda ctx, _p, on: untrusted_media(ctx, on),
              help="Open every video as avs-serve opens uploads: the file itself only (no playlists, concat lists, image "
                   "patterns or protocols that read other files or URLs) and only common containers (MP4/MOV, "
                   "Matroska/WebM, AVI, MPEG-TS/PS, FLV, Ogg, ASF); others fail with one line. For files you did not make.")
@click.option("--overlay/--no-overlay", default=True, show_default=True, help="Write overlay.mp4 (frames tinted by the mask, with the original audio).")
@click.option("--save-logits", is_flag=True, help="Also write each second's low-resolution logits as float16 .npy under logits/.")
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True, help="Folder holding the numbered run folders.")
@click.option("--name", default="run", show_default=True, help="Run folder name: runs/run, runs/run2, ...")
@click.option("--exist-ok", is_flag=True, help="Write into PROJECT/NAME itself even if it exists (a video already there gets <stem>_2).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document (all videos) to stdout instead of the human summary; "
              "live: one JSON line per mask on stdout (also in the run folder's masks.jsonl).")
@click.option("--realtime", is_flag=True, help="Live mode on a file: play it at its own pace, as if it were a stream.")
@click.option("--format", "input_format", metavar="FMT", help="FFmpeg input format of the source, e.g. lavfi, v4l2, mpegts "
              "(a capture device: live mode).")
@click.option("--input-option", "input_options", multiple=True, metavar="KEY=VALUE",
              help="An FFmpeg option for opening the live source (e.g. rtsp_transport=tcp, listen=1); repeatable.")
@click.option("--audio-source", metavar="SRC", help="Live mode: take the audio from this second input (a microphone next to "
              "a camera, e.g. --audio-format alsa default; a stream URL; a lavfi graph) instead of the source's own track.")
@click.option("--audio-format", metavar="FMT", help="FFmpeg input format of --audio-source, e.g. alsa, pulse, lavfi, mpegts.")
@click.option("--audio-input-option", "audio_input_options", multiple=True, metavar="KEY=VALUE",
              help="An FFmpeg option for opening --audio-source; repeatable.")
@click.option("--audio-sync", type=click.Choice(["start", "timestamps"]), default="start", show_default=True,
              help="How --audio-source's clock meets the video's: start (each input counted from its own first "
                   "timestamp, as for two devices) or timestamps (both carry one clock, as two streams of one encoder).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Live mode: stop after S seconds of the stream.")
@click.option("--mask-fps", type=click.Choice(["1", "2", "4", "5", "8", "10"]), default="1", show_default=True, metavar="K",
              help="Live mode: K masks a second, from K staggered windows of T seconds (each costs one encoder frame); "
                   "1, 2, 4, 5, 8 or 10.")
@click.option("--view", "view_port", type=click.IntRange(0, 65535), metavar="PORT",
              help="Live mode: serve a page on 127.0.0.1:PORT that plays the stream with the mask tinted over it, "
                   "with latency and dropped seconds (MJPEG).")
@click.option("--png", is_flag=True, help="Live mode: also write each mask as masks/000001.png ... in the run folder.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@version_option()
def main(videos, weights, config, vggish, engine_dir, backend, device, precision, fused, global_attention_precision, tf32, compile_blocks,
         cuda_graph,
         clip_seconds, threads, resize, allow_silent, overlay, save_logits, project, name, exist_ok, as_json, realtime, input_format,
         input_options, audio_source, audio_format, audio_input_options, audio_sync, duration, mask_fps, view_port, png, quiet):
    """Segment the sounding objects of each video, one mask per second.

    VIDEOS are files, folders (every video inside, sorted by name), quoted glob
    patterns ('clips/*.mp4', 'data/**/*.mkv') or @LIST (a text file with one path
    per line). For each video, writes masks/000001.png ... (one per second, at the
    video's resolution), overlay.mp4 (with the original audio) and result.json into
    a new numbered run folder.

    Without --weights, --config or --engine-dir, the bundled demo model runs (on
    ONNX Runtime; it knows generated test videos, not the real world). A video
    that fails gets one error line and the others still run. Exit code: 0 all
    done, 1 some failed, 2 nothing could start, 130 interrupted (Ctrl-C), 143
    terminated (SIGTERM); an interrupted run removes what it had half-written.

    Live mode: a stream URL (rtsp, rtmp, srt, udp, tcp, http(s) incl. HLS), a
    capture device (--format v4l2 /dev/video0, --format lavfi 'testsrc...') or a
    file with --realtime. Each second gets the mask of the window of the last T
    seconds (its causal window), written as it is ready with its latency; when the
    model falls behind, the newest second wins and older ones are dropped and
    counted. --duration S stops after S seconds; Ctrl-C or SIGTERM stops cleanly
    with a summary (exit 0; 1 if the source failed, 2 if it could not be opened).
    """
    from ..runtime.job import sigterm_as_interrupt

    with sigterm_as_interrupt():
        code = _main(videos, weights=weights, config=config, vggish=vggish, engine_dir=engine_dir, backend=backend, device=device,
                     precision=precision, fused=fused, global_attention_precision=global_attention_precision, tf32=tf32,
                     compile_blocks=compile_blocks, cuda_graph=cuda_graph, clip_seconds=clip_seconds, threads=threads, resize=resize,
                     allow_silent=allow_silent, overlay=overlay, save_logits=save_logits, project=project, name=name,
                     exist_ok=exist_ok, as_json=as_json, quiet=quiet,
                     live=dict(realtime=realtime, input_format=input_format, input_options=input_options,
                               audio_source=audio_source, audio_format=audio_format,
                               audio_input_options=audio_input_options, audio_sync=audio_sync, duration=duration, png=png, mask_fps=int(mask_fps), view_port=view_port))
    sys.exit(code)


def _main(videos, *, weights, config, vggish, engine_dir, backend, device, precision, fused, global_attention_precision, tf32,
          compile_blocks, cuda_graph, clip_seconds, threads, resize, allow_silent, overlay, save_logits, project, name, exist_ok, as_json, quiet,
          live=None) -> int:
    from tqdm import tqdm

    from ..runtime import Pipeline
    from ..runtime.job import Terminated, run_videos
    from ..runtime.inputs import expand_inputs

    def say(line: str) -> None:
        if not as_json:
            click.echo(line, err=True)

    try:
        spec = ModelSpec.choose(backend=backend, weights=weights, config=config, engine_dir=engine_dir, vggish=vggish,
                                device=device, precision=precision, threads=threads, fused=fused, cuda_graph=cuda_graph,
                                global_attention_precision=global_attention_precision, tf32=tf32,
                                compile_blocks=compile_blocks)
    except AvsError as e:
        echo_err(str(e))
        return 2
    from .live import is_live, parse_input_options, run_live_source

    live = live or {}
    if is_live(videos, live.get("input_format"), live.get("realtime")):
        if len(videos) != 1:
            echo_err(f"live mode takes one source, got {len(videos)}")
            return 2
        options = parse_input_options(live.get("input_options") or ())
        audio_options = parse_input_options(live.get("audio_input_options") or (), "--audio-input-option")
        try:
            runner = spec.create().activate()
        except AvsError as e:
            echo_err(str(e))
            return 2
        model = spec.describe(runner)
        click.echo(f"model: {model['summary']}", err=True)
        return run_live_source(runner, model, videos[0], input_format=live.get("input_format"), input_options=options,
                               realtime=bool(live.get("realtime")), duration=live.get("duration"),
                               audio_source=live.get("audio_source"), audio_format=live.get("audio_format"),
                               audio_options=audio_options, audio_sync=live.get("audio_sync") or "start",
                               mask_fps=int(live.get("mask_fps") or 1), view_port=live.get("view_port"),
                               clip_seconds=clip_seconds, resize=resize, allow_silent=allow_silent,
                               png=bool(live.get("png")), project=project, name=name if name != "run" else "live",
                               exist_ok=exist_ok, as_json=as_json)
    if (live.get("duration") or live.get("png") or live.get("input_options") or (live.get("mask_fps") or 1) != 1
            or live.get("view_port") is not None or live.get("audio_source") or live.get("audio_format")
            or live.get("audio_input_options")):
        echo_err("--duration, --mask-fps, --view, --png, --input-option and --audio-source apply to live mode only "
                 "(a stream URL, --format or --realtime)")
        return 2
    inputs = expand_inputs(videos)
    if not inputs.videos:
        for note in inputs.notes:
            say(f"note: {note}")
        for err in inputs.errors:
            echo_err(err)
        echo_err("no video to run")
        return 2
    try:
        runner = spec.create().activate()
        if spec.backend == "tensorrt":
            from ..artifacts.engine_manifest import check_clip_length

            # refuse before any decoding; short videos run with T = their length (always <= -T)
            check_clip_length(runner.manifest, clip_seconds)
    except AvsError as e:
        echo_err(str(e))
        return 2
    model = spec.describe(runner)
    say(f"model: {model['summary']}")
    for w in getattr(runner, "warnings", []) or []:
        say(f"warning: {w}")
    for note in inputs.notes:
        say(f"note: {note}")
    for err in inputs.errors:
        echo_err(err)

    def told(item, doc):
        if item.path is None:
            return
        if "error" in doc:
            echo_err(doc["error"])
            return
        for w in doc["warnings"]:
            say(f"warning: {quote_path(item.path)}: {w}")
        say(f"{quote_path(item.path)}: {len(doc['seconds'])} s segmented; {doc['speed_line']}")

    def progress_bar(video):
        if quiet or as_json:
            return None
        bar = tqdm(desc=Path(video).name, unit="s", leave=False)

        def advance(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
            if done >= total:
                bar.close()

        return advance

    pipeline = Pipeline(runner, clip_seconds=clip_seconds, resize=resize, allow_silent=allow_silent)
    run = run_videos(pipeline, inputs.items, project=project, name=name, exist_ok=exist_ok, on_video=told,
                     progress=progress_bar, overlay=overlay, save_logits=save_logits, model=model)
    if run.interrupted is not None:
        what = "terminated" if isinstance(run.interrupted, Terminated) else "interrupted"
        saved = len(run.done) and run.saved
        click.echo(f"{what}: {len(run.done)} video(s) done" + (f", saved under {run.run_dir}" if saved else ", nothing saved")
                   + "; half-written outputs removed", err=True)
        return EXIT_TERMINATED if isinstance(run.interrupted, Terminated) else EXIT_INTERRUPTED
    if as_json:
        click.echo(json.dumps({"run_dir": str(run.run_dir) if run.saved else None, "model": model,
                               "elapsed_s": round(run.elapsed_s, 3), "videos": run.results}, indent=2))
    else:
        total, done = len(run.results), len(run.done)
        where = f"Results saved to {run.run_dir}" if done and run.saved else "nothing saved"
        click.echo(f"{done}/{total} video(s) done in {run.elapsed_s:.1f} s. {where}")
    return 1 if run.failed else 0


if __name__ == "__main__":
    main()
