"""avs-serve: the model behind an HTTP API (Ray Serve + FastAPI), on this machine or a Ray cluster."""

from __future__ import annotations

import sys
import time

import click

from ..errors import AvsError
from .batch import model_for_ray
from .common import echo_err
from .options import (CONTEXT, AvsCommand, backend_option, clip_seconds_option, config_option, device_option,
                      engine_dir_option, precision_option, threads_option, version_option, weights_option)


@click.command(cls=AvsCommand, context_settings=CONTEXT)
@weights_option("Checkpoint for the torch backend (an avs-engine bundle, or an ST-BAVA state_dict with --config).")
@config_option("Preset (tiny, vit_b, vit_l, vit_h) or a JSON config, for checkpoints that are not bundles.")
@engine_dir_option("ONNX graphs (manifest.json: onnxruntime backend) or TensorRT engines (engines.json: tensorrt backend). "
                   "Default: the bundled demo model's ONNX graphs.")
@backend_option("Which backend the model replicas run. Default: what the model options imply (as avs-run).")
@device_option("Where the model replicas compute: cpu, cuda or cuda:N.  [default: cpu; tensorrt: cuda]", default=None)
@precision_option("fp32 or fp16 (onnxruntime: which exported graphs; torch: also bf16).  [default: the backend's]")
@threads_option("ONNX Runtime intra-op threads per model replica.  [default: ONNX Runtime's]")
@clip_seconds_option("Window length in seconds (the model was trained on 5); a shorter video runs with T = its length.")
@click.option("--resize", type=click.Choice(["avsbench", "direct"]), default="avsbench", show_default=True,
              help="avsbench: squash to 224x224 then up, as the training data; direct: straight to the encoder size.")
@click.option("--allow-silent", is_flag=True, help="Run videos without an audio track on silence instead of answering 422.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the HTTP server listens on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True, help="HTTP port.")
@click.option("--address", default=None, metavar="ADDR",
              help="Join this Ray cluster (host:6379, ray://host:10001 or auto). Default: start Ray on this machine.")
@click.option("--replicas", type=click.IntRange(1), default=1, show_default=True, help="Model replicas (each holds one runner).")
@click.option("--ingress-replicas", type=click.IntRange(1), default=1, show_default=True,
              help="HTTP replicas (each reads uploads, decodes and writes masks for its requests).")
@click.option("--cpus-per-replica", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Logical CPUs per model replica.")
@click.option("--gpus-per-replica", type=click.FloatRange(0), default=None, metavar="F",
              help="Logical GPUs per model replica.  [default: 1 on cuda, 0 on cpu]")
@click.option("--max-batch-frames", type=click.IntRange(1), default=32, show_default=True,
              help="Frames a model replica batches across concurrent requests (at least -T).")
@click.option("--batch-wait-ms", type=click.FloatRange(0), default=20.0, show_default=True,
              help="How long a model replica waits for more clips before running a batch.")
@click.option("--max-upload-mb", type=click.FloatRange(0, min_open=True), default=200.0, show_default=True,
              help="Largest upload (or fetched source); larger ones get 413.")
@click.option("--max-video-s", type=click.FloatRange(0, min_open=True), default=600.0, show_default=True,
              help="Longest video taken; longer ones get 422.")
@click.option("--timeout-s", type=click.FloatRange(0, min_open=True), default=300.0, show_default=True,
              help="Per-request limit, from reading the upload to the answer; past it, 504.")
@click.option("--allow-source", "allow_sources", multiple=True, metavar="PREFIX",
              help="Let requests name a file under this folder, or a URL under this URL prefix, with source= "
                   "instead of uploading it (repeatable). URLs are compared by scheme, host, port and path segments "
                   "after normalising (case, default ports, %-encoding, ./.. segments; no user:password@), and "
                   "so is every redirect. Default: uploads only.")
@click.option("--cpus-per-stream", type=click.FloatRange(0, min_open=True), default=0.5, show_default=True,
              help="Logical CPUs of each live stream's actor (POST /v1/streams).")
@click.option("--max-streams", type=click.IntRange(1), default=16, show_default=True,
              help="Live streams at once; more get 429.")
@click.option("--num-cpus", type=click.IntRange(1), default=None, metavar="N",
              help="CPUs Ray may use when it starts here.  [default: all]")
@version_option()
def main(weights, config, engine_dir, backend, device, precision, threads, clip_seconds, resize, allow_silent, host, port,
         address, replicas, ingress_replicas, cpus_per_replica, gpus_per_replica, max_batch_frames, batch_wait_ms,
         max_upload_mb, max_video_s, timeout_s, allow_sources, cpus_per_stream, max_streams, num_cpus):
    """Serve the model over HTTP until Ctrl-C.

    POST /v1/segment with the video's bytes as the body (curl --data-binary
    @video.mp4 -H 'Content-Type: video/mp4' http://127.0.0.1:8000/v1/segment)
    answers JSON: per second the area fraction, the bounding box and the mask
    as COCO RLE; ?overlay=true adds overlay.mp4 (base64). GET /healthz says
    whether the model answers; /docs is the OpenAPI page. Bad media get 4xx
    with a one-line reason. Live jobs: POST /v1/streams {"source": URL} on a
    stream under an --allow-source URL prefix starts one (a Ray actor per
    stream); GET /v1/streams/ID/events follows its masks as server-sent events;
    DELETE /v1/streams/ID stops it. The API and its limits: docs/scale.md.
    """
    try:
        spec, img_size = model_for_ray("avs-serve", backend=backend, weights=weights, config=config, engine_dir=engine_dir,
                                       device=device, precision=precision, threads=threads)
    except AvsError as e:
        echo_err(str(e))
        sys.exit(2)
    from ..runtime.job import sigterm_as_interrupt
    from ..scale.job import ray_context
    from ..scale.serve_app import ServeConfig, start, stop

    gpus = gpus_per_replica if gpus_per_replica is not None else (0.0 if spec.device_name == "cpu" else 1.0)
    cfg = ServeConfig(runner=spec, img_size=img_size, clip_seconds=clip_seconds, resize=resize, allow_silent=allow_silent,
                      allow_sources=tuple(allow_sources), max_upload_mb=max_upload_mb, max_video_s=max_video_s,
                      timeout_s=timeout_s, model_replicas=replicas, ingress_replicas=ingress_replicas,
                      model_cpus=cpus_per_replica, model_gpus=gpus, max_batch_frames=max_batch_frames,
                      batch_wait_s=batch_wait_ms / 1e3, stream_cpus=cpus_per_stream, max_streams=max_streams)
    ray_context(address, num_cpus=num_cpus, quiet=True)
    # After Ray starts (it installs its own SIGTERM handler): SIGTERM (a container stop) stops as Ctrl-C does.
    with sigterm_as_interrupt():
        try:
            url = start(cfg, host=host, port=port)
            click.echo(f"avs-serve: {url}/v1/segment (OpenAPI page: {url}/docs); Ctrl-C stops", err=True)
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("avs-serve: shutting down", err=True)
        finally:
            stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
