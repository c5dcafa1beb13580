"""avs-run's live mode: parse the live options, open the source, run, print the summary."""

from __future__ import annotations

import sys

import click

from ..errors import AvsError
from .common import echo_err

EXIT_SOURCE_FAILED = 1


def is_live(videos, input_format, realtime) -> bool:
    """A live run: a stream URL, an input format (a capture device) or --realtime."""
    from ..io.stream import is_stream_url

    return bool(input_format) or realtime or any(is_stream_url(v) for v in videos)


def parse_input_options(pairs, option: str = "--input-option") -> dict:
    out = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {p!r}", param_hint=option)
        out[key] = value
    return out


def run_live_source(runner, model: dict, source: str, *, input_format, input_options, realtime, duration,
                    mask_fps, view_port, clip_seconds, resize, allow_silent, png, project, name, exist_ok, as_json,
                    audio_source=None, audio_format=None, audio_options=None, audio_sync="start") -> int:
    """One live source through :func:`avs_engine.runtime.live_job.run_live`; returns the exit code."""
    from ..runtime.live_job import open_stream, run_live

    def say(line: str) -> None:
        click.echo(line, err=True)

    try:
        reader = open_stream(source, input_format=input_format, options=input_options, realtime=realtime,
                             allow_silent=allow_silent, mask_fps=mask_fps, audio_source=audio_source,
                             audio_format=audio_format, audio_options=audio_options, audio_sync=audio_sync)
    except AvsError as e:
        echo_err(str(e))
        return 2
    heard = (f"audio from {reader.audio_source} ({audio_sync})" if reader.audio_source
             else "audio" if reader.has_audio else "silent")
    say(f"live: {source} ({reader.width}x{reader.height}, {reader.fps:g} fps, {heard}), windows of {clip_seconds} s, {mask_fps} mask(s) a second")
    view = None
    if view_port is not None:
        from ..runtime.live_view import LiveView

        try:
            view = LiveView(view_port)
        except OSError as e:
            reader.close()
            echo_err(f"--view {view_port}: cannot serve the live view ({e.strerror or e})")
            return 2
        say(f"live view: {view.url}")
    try:
        out = run_live(runner, reader, clip_seconds=clip_seconds, resize=resize, duration_s=duration, project=project,
                       name=name, exist_ok=exist_ok, png=png, lines=sys.stdout if as_json else None, model=model,
                       mask_fps=mask_fps, view=view)
    finally:
        if view is not None:
            view.close()
    s, lat = out.summary, out.summary["latency"]
    lat_text = f"latency p50 {lat['p50_s'] * 1e3:.0f} ms, p95 {lat['p95_s'] * 1e3:.0f} ms" if s["masks"] else "no mask"
    where = f"; saved to {out.output_dir}" if out.output_dir else ""
    say(f"stopped: {s['stopped']}. {s['masks']} mask(s) from {s['seconds_received']} window(s) received, "
        f"{s['dropped']} dropped, {lat_text}{where}")
    return EXIT_SOURCE_FAILED if s["stopped"].startswith("source failed") else 0


__all__ = ["is_live", "parse_input_options", "run_live_source"]
