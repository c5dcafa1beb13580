"""avs-bench: per-stage latency, memory and throughput, every backend against the PyTorch reference."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from ..errors import AvsError
from .common import echo_err
from .options import (CLIP_SECONDS, CONTEXT, AvsCommand, alias, clip_seconds_option, config_option, device_option, threads_option,
                      version_option, weights_option)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WIDTHxHEIGHT, e.g. 640x360, got '{text}'") from None
    return w, h


def _command(params: dict) -> str:
    """The command line that reproduces this run (every option spelled out)."""
    parts = ["avs-bench"]
    for name, value in params.items():
        if value is None or name == "quiet":
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            if name in ("overlay", "export_missing"):
                word = name.split("_")[0]
                parts.append(f"--{word}" if value else f"--no-{word}")
            elif value:
                parts.append(flag)
            continue
        parts += [flag, str(value)]
    return shlex.join(parts)


@click.command(cls=AvsCommand, context_settings=CONTEXT)
@config_option("Model preset (tiny, vit_b, vit_l, vit_h) or a JSON config.", default="tiny")
@alias("--preset", to="config", help="Old spelling of --config.")
@clip_seconds_option("Clip length T in seconds (frames per clip).")
@alias("--T", to="clip_seconds", type=CLIP_SECONDS, help="Old spelling of -T/--clip-seconds.")
@click.option("--backends", default="torch:fp32,onnxruntime", show_default=True,
              help="Comma-separated rows, backend[:precision][+fused] with precision fp32, fp16, bf16 or int8: torch:fp32, "
                   "torch:bf16, torch:fp16, torch:fp32+fused (the exact-algebra blocks; on CUDA the fused kernels), "
                   "onnxruntime[:fp32|fp16|int8], tensorrt. torch:fp32 (the reference) is always measured, first.")
@click.option("--runs", type=click.IntRange(1), default=5, show_default=True, help="Measured runs per row (median and p90 over these).")
@click.option("--warmup", type=click.IntRange(0), default=1, show_default=True, help="Warm-up runs per row, reported apart.")
@device_option("Where to compute: cpu, cuda or cuda:N (torch and onnxruntime rows, and the matmul peak).")
@threads_option()
@click.option("--engine-dir", type=click.Path(file_okay=False, path_type=Path), help="Graphs/engines from avs-export, for onnxruntime/tensorrt rows.")
@click.option("--export/--no-export", "export_missing", default=True, show_default=True,
              help="onnxruntime rows without --engine-dir: export the same model's graphs first (avs-export onnx, in a child process).")
@weights_option("A bundle to measure (default: random weights, seed 0: speed does not depend on them); exported for onnxruntime rows.")
@click.option("--video-size", default=None, help="Size of the generated test video(s), WIDTHxHEIGHT. Default: 640x360; 320x180 with --streaming.")
@click.option("--overlay/--no-overlay", default=True, show_default=True, help="Time writing the overlay video as avs-run does.")
@click.option("--streaming", is_flag=True, help="Instead: avs-run's real-time factor and peak RSS (torch float32, random weights) "
              "on a short and a long generated video.")
@click.option("--short-seconds", type=click.IntRange(1), default=10, show_default=True, help="--streaming: the short video's length.")
@click.option("--long-seconds", type=click.IntRange(1), default=600, show_default=True, help="--streaming: the long video's length.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Report path without extension; writes .json, .md and .png. "
              "Default: avs_bench_<config>_T<T> (or avs_bench_streaming).")
@click.option("-q", "--quiet", is_flag=True, help="No progress lines.")
@version_option()
def main(config, clip_seconds, backends, runs, warmup, device, threads, engine_dir, export_missing, weights, video_size, overlay, streaming,
         short_seconds, long_seconds, out, quiet):
    """Time every stage of a clip (decode, log-mel, preprocess, audio, image
    encoder, fusion, mask decoder, post-processing, writing) for each backend,
    with the PyTorch FP32 reference measured in the same run; report medians,
    p90, ratios to the reference, warm-up apart, achieved TFLOP/s against the
    measured matmul peak, and peak memory (each row in a fresh process). Backends that cannot run here are
    listed as "not available: <reason>".

    Writes OUT.json (every figure with its unit), OUT.md and OUT.png. Exit
    code 1 when the reference row (or a streaming run) could not be measured,
    2 for bad options.
    """
    ctx = click.get_current_context()
    params = {p.name: ctx.params[p.name] for p in ctx.command.params if p.name in ctx.params}  # declared order
    command = _command({k: v for k, v in params.items() if k not in (
        ("short_seconds", "long_seconds") if not streaming else
        ("backends", "runs", "warmup", "threads", "engine_dir", "export_missing", "weights"))})
    say = (lambda m: None) if quiet else (lambda m: click.echo(m, err=True))
    preset, T = config, clip_seconds
    try:
        from ..bench.report import write_reports

        if streaming:
            from ..bench.streaming import run_streaming

            doc = run_streaming(preset, T, (short_seconds, long_seconds), video_size=_size(video_size or "320x180"),
                                device=device, dtype="float32", overlay=overlay, command=command, progress=say)
            prefix = out or Path("avs_bench_streaming")
        else:
            from ..bench.harness import BenchSettings, run_benchmark

            settings = BenchSettings(
                preset=preset, T=T, backends=tuple(b for b in backends.split(",") if b.strip()), runs=runs,
                warmup=warmup, device=device, engine_dir=engine_dir, weights=weights, video_size=_size(video_size or "640x360"),
                overlay=overlay, threads=threads, export_missing=export_missing, command=command,
            )
            doc = run_benchmark(settings, progress=say)
            prefix = out or Path(f"avs_bench_{preset}_T{T}")
        paths = write_reports(doc, prefix)
    except AvsError as e:
        echo_err(str(e))
        sys.exit(2)
    click.echo(_summary(doc))
    click.echo(f"Reports written to {paths['json']}, {paths['markdown']}, {paths['chart']}")
    failed = [v for v in doc.get("videos", []) if v["status"] != "ok"]
    if doc["kind"] == "stages" and doc["rows"][0]["status"] != "ok":
        echo_err(f"the reference row {doc['reference']} could not be measured: {doc['rows'][0]['status']}")
        sys.exit(1)
    if failed:
        echo_err(f"{len(failed)} streaming run(s) failed")
        sys.exit(1)


def _summary(doc: dict) -> str:
    if doc["kind"] == "streaming":
        return "\n".join(
            f"{v['label']}: " + (f"real-time factor {v['realtime_factor']['value']}, peak RSS {v['peak_rss']['value']} MiB"
                                 if v["status"] == "ok" else v["status"])
            for v in doc["videos"]
        ) + "\n" + doc["memory_flat"]["statement"]
    lines = []
    for r in doc["rows"]:
        if r["status"] != "ok":
            lines.append(f"{r['label']}: {r['status']}")
            continue
        clip, model = r["totals"]["clip"], r["totals"]["model"]
        ratio = clip["ratio_to_reference"]
        ratio_s = f" ({ratio['value']:.2f}x reference)" if isinstance(ratio, dict) and r["label"] != doc["reference"] else ""
        lines.append(f"{r['label']}: clip {clip['median']['value']:.1f} ms median (p90 {clip['p90']['value']:.1f}){ratio_s}, "
                     f"model {model['median']['value']:.1f} ms, {r['throughput']['value']:.2f} s of video per s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
