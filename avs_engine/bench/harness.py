"""avs-bench's measurement: every stage of one clip, per backend, against the PyTorch reference.

One clip of T seconds of a generated video goes through the pieces
``avs-run`` uses (the clip source, the model step, the writer), one after
another so that each is timed on its own: decode (video frames, audio and
log-mel), squash, preprocess, the four model stages as the runner's own
clock times them inside its clip method, post-processing (masks at the
video's size) and writing (mask PNGs and the overlay video).
The torch FP32 eager row is always measured first, in the same process and
run, and every other row is also given as a ratio to it. Warm-up runs are
reported apart; medians and p90 are over the measured runs only.
"""

from __future__ import annotations

import gc
import os
import shutil
import tempfile
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import resolve
from ..errors import AvsError, ConfigError
from ..artifacts.spec import STAGE_ORDER
from ..runtime.clip_source import ClipSource
from ..runtime.model_step import ModelStep
from ..runtime.writer import VideoWriter
from .flops import stage_flops
from .machine import machine_info, now_utc, versions
from .media import make_bench_video
from .memory import MiB, current_rss_bytes, gpu_memory_for, peak_rss_bytes, reset_peak_rss
from .rows import REFERENCE, RowSpec, make_runner

SCHEMA = "avs-bench/2"
MEDIA_STAGES = ("decode", "squash", "preprocess")
MODEL_STAGES = STAGE_ORDER  # audio, image_encoder, fusion, mask_decoder
OUTPUT_STAGES = ("postprocess", "write")
STAGES = MEDIA_STAGES + MODEL_STAGES + OUTPUT_STAGES
TOTALS = ("model", "clip")  # the four model stages; every stage
# Reports written before the clip source existed (schema avs-bench/1) timed the media steps apart.
LEGACY_STAGES = ("decode_video", "decode_audio", "log_mel", "preprocess") + MODEL_STAGES + OUTPUT_STAGES


def stage_names(doc: dict) -> tuple[str, ...]:
    """The per-stage rows of a report, by its schema version."""
    return LEGACY_STAGES if doc.get("schema") == "avs-bench/1" else STAGES


@dataclass
class BenchSettings:
    """What ``avs-bench`` measures. ``video_size`` is (width, height) of the generated clip."""

    preset: str = "tiny"
    T: int = 5
    backends: tuple[str, ...] = (REFERENCE,)
    runs: int = 5
    warmup: int = 1
    device: str = "cpu"
    engine_dir: Path | None = None
    weights: Path | None = None
    video_size: tuple[int, int] = (640, 360)
    fps: int = 25
    resize: str = "avsbench"
    overlay: bool = True
    peak_budget_s: float = 4.0
    threads: int | None = None  # CPU threads for torch and ONNX Runtime (None: each library's default)
    export_missing: bool = True  # onnxruntime rows without engine_dir: export the graphs first
    fresh_process: bool = True  # each row in its own process: peak RSS per row, not earlier rows' high-water mark
    command: str | None = None
    rows: list[RowSpec] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if self.T < 1 or self.runs < 1 or self.warmup < 0:
            raise ConfigError(f"need T >= 1, runs >= 1, warmup >= 0; got T={self.T}, runs={self.runs}, warmup={self.warmup}")
        specs = [RowSpec.parse(b) for b in self.backends]
        ref = RowSpec.parse(REFERENCE)
        # The reference row is always measured, and first.
        self.rows = [ref] + [s for i, s in enumerate(specs) if s != ref and s not in specs[:i]]


def fig(value: float | None, unit: str, digits: int = 4) -> dict:
    """A figure with its unit (every number in a report is one of these)."""
    return {"value": None if value is None else round(float(value), digits), "unit": unit}


# ------------------------------------------------------------------------------ one clip


class _Recorder:
    """Seconds, peak host RSS (and GPU memory) per stage; a stage observer of the runner's clock."""

    def __init__(self, gpu) -> None:
        self.gpu = gpu
        self.seconds: dict[str, float] = {}
        self.rss: dict[str, int] = {}
        self.gpu_peak: dict[str, int] = {}

    def stage_started(self, name: str) -> None:
        reset_peak_rss()
        if self.gpu is not None:
            self.gpu.reset()

    def stage_ended(self, name: str) -> None:
        self.rss[name] = peak_rss_bytes()
        if self.gpu is not None:
            self.gpu_peak[name] = self.gpu.peak_bytes()

    @contextmanager
    def piece(self, names: tuple[str, ...]):
        """A host piece that times several stages itself: each gets the piece's memory peak."""
        self.stage_started(names[0])
        try:
            yield
        finally:
            self.stage_ended(names[0])
            for n in names[1:]:
                self.rss[n] = self.rss[names[0]]
                if self.gpu is not None:
                    self.gpu_peak[n] = self.gpu_peak[names[0]]


def run_clip(runner, video: Path, T: int, rec: _Recorder, out_dir: Path,
             resize: str = "avsbench", overlay: bool = True) -> None:
    """One clip through the clip source, the model step and the writer (as avs-run runs them, but one
    after another), each stage recorded in ``rec``."""
    step = ModelStep(runner, observers=[rec])
    source = ClipSource(step.img_size, T, resize)
    result = source.open(video)
    clips = source.clips(result)
    with rec.piece(("decode", "squash")):
        clip = next(clips)
    clips.close()
    rec.seconds.update(clip.timings)
    pred = step(clip)
    rec.seconds.update(pred.timings)
    with rec.piece(("postprocess", "write")):
        writer = VideoWriter(result, out_dir, step.img_size, overlay=overlay, depth=1)
        writer.write_all([pred])
    rec.seconds.update(writer.seconds_s)
    if result.warnings:
        raise AvsError(f"{video}: {result.warnings[0]}")


# ------------------------------------------------------------------------------ rows


def _stats(values: list[float], unit_scale: float = 1e3) -> dict:
    v = np.asarray(values) * unit_scale
    return {
        "median": fig(np.median(v), "ms"),
        "p90": fig(np.percentile(v, 90), "ms"),
        "runs": {"values": [round(float(x), 4) for x in v], "unit": "ms"},
    }


def _measure_row(runner, spec: RowSpec, video: dict, s: BenchSettings, workdir: Path, progress) -> dict:
    gpu = gpu_memory_for(runner)
    rss_scope = "stage" if reset_peak_rss() else "process (peak reset refused by the kernel)"
    rss_loaded = current_rss_bytes() or 0
    recs = []
    for i in range(s.warmup + s.runs):
        rec = _Recorder(gpu)
        out = workdir / f"{spec.label.replace(':', '_')}_run{i}"
        run_clip(runner, Path(video["path"]), s.T, rec, out, s.resize, s.overlay)
        shutil.rmtree(out, ignore_errors=True)
        recs.append(rec)
        if progress:
            kind = "warm-up" if i < s.warmup else "run"
            progress(f"  {spec.label} {kind} {i + 1 if i < s.warmup else i + 1 - s.warmup}: {sum(rec.seconds.values()) * 1e3:.1f} ms")
    warm, measured = recs[: s.warmup], recs[s.warmup:]

    def per_stage(rs, name):
        if name == "model":
            return [sum(r.seconds[k] for k in MODEL_STAGES) for r in rs]
        if name == "clip":
            return [sum(r.seconds[k] for k in STAGES) for r in rs]
        return [r.seconds[name] for r in rs]

    row = {
        "label": spec.label, "backend": spec.backend, "precision": spec.precision, "status": "ok",
        "runner": runner.description, "variant": "fused" if spec.fused else None,
        "clock": {"model_stages": runner.stage_clock().kind + " (the runner's clip method)",
                  "host_stages": "host monotonic clock (perf_counter)"},
        "warmup": {
            "runs": s.warmup,
            "clip": {"values": [round(x * 1e3, 4) for x in per_stage(warm, "clip")], "unit": "ms"},
            "first_run": {k: fig(warm[0].seconds[k] * 1e3, "ms") for k in STAGES} if warm else {},
        },
        "stages": {}, "totals": {},
    }
    manifest = getattr(runner, "manifest", None)
    if manifest is not None:  # graphs/engines: where they came from
        weights = manifest.checkpoint.get("summary") or ", ".join(
            f"{f.get('file')} sha256 {str(f.get('sha256'))[:12]}" for f in manifest.checkpoint.get("files", [])) or "unknown"
        where = str(runner.engine_dir)
        if Path(where).resolve().is_relative_to(workdir.resolve()):
            where = "exported for this run by avs-export onnx (temporary folder)"
        row["engine"] = {"dir": where, "created": manifest.created, "weights": weights,
                         "opset": f"opset {manifest.opset}"}
    for name in STAGES:
        st = _stats(per_stage(measured, name))
        st["peak_rss"] = fig(max(r.rss[name] for r in recs) / MiB, "MiB", 1)
        if gpu is not None:
            st["gpu_peak"] = fig(max(r.gpu_peak[name] for r in recs) / MiB, "MiB", 1)
        row["stages"][name] = st
    for name in TOTALS:
        row["totals"][name] = _stats(per_stage(measured, name))
    clip_median_s = row["totals"]["clip"]["median"]["value"] / 1e3
    # One frame per second of video: frames/s and the real-time factor are the same number.
    row["throughput"] = fig(s.T / clip_median_s, "s of video per s (= frames/s)")
    mem = {"rss_after_load": fig(rss_loaded / MiB, "MiB", 1),
           "peak_rss": fig(max(max(r.rss.values()) for r in recs) / MiB, "MiB", 1),
           "rss_peak_scope": rss_scope}
    if gpu is not None:
        mem["gpu_peak"] = fig(max(max(r.gpu_peak.values()) for r in recs) / MiB, "MiB", 1)
        mem["gpu_source"] = gpu.source
    elif s.device.startswith("cuda"):
        mem["gpu_peak"] = "not measured: this backend's allocations are not visible to torch.cuda"
    row["memory"] = mem
    return row


def _add_ratios_and_efficiency(rows: list[dict], flops: dict[str, float], peaks: dict[str, dict]) -> None:
    ref = rows[0] if rows and rows[0]["status"] == "ok" else None
    for row in rows:
        if row["status"] != "ok":
            continue
        for group, names in (("stages", STAGES), ("totals", TOTALS)):
            for name in names:
                st = row[group][name]
                if ref is not None:
                    r = ref[group][name]["median"]["value"]
                    st["ratio_to_reference"] = fig(st["median"]["value"] / r if r else None, "x reference time")
                else:
                    st["ratio_to_reference"] = "not available: the reference row was not measured"
                f = flops.get(name) if name != "model" else sum(flops.values())
                if f is None:
                    continue
                achieved = f / (st["median"]["value"] / 1e3) / 1e12
                if row.get("variant") == "fused" and name in ("fusion", "model"):
                    # The fused blocks skip work the reference does: a rate, not an efficiency.
                    st["achieved"] = fig(achieved, "TFLOP/s reference-equivalent (reference FLOPs / this time)", 6)
                    continue
                st["achieved"] = fig(achieved, "TFLOP/s", 6)
                peak = peaks.get(row["precision"], {})
                if isinstance(peak, dict) and peak.get("value"):
                    st["efficiency"] = fig(100.0 * achieved / peak["value"], f"% of measured {row['precision']} matmul peak", 2)
                    st["floor"] = fig(f / (peak["value"] * 1e12) * 1e3, "ms (the FLOPs at the measured matmul peak)", 6)


def _row(spec: RowSpec, s: BenchSettings, video: dict, workdir: Path, say) -> dict:
    """Activate, measure and release one row in this process: its report row (status ``ok`` or why not)."""
    try:
        runner = make_runner(spec, s, workdir, say)
    except (AvsError, ImportError) as e:
        runner = f"not available: {str(e).splitlines()[0]}"
    except Exception as e:  # a framework's own error while loading: say which
        runner = f"failed: activation raised {type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
    if isinstance(runner, str):
        say(f"{spec.label}: {runner}")
        return {"label": spec.label, "backend": spec.backend, "precision": spec.precision, "status": runner}
    try:
        return _measure_row(runner, spec, video, s, workdir, say)
    except Exception as e:
        say(traceback.format_exc())
        return {"label": spec.label, "backend": spec.backend, "precision": spec.precision,
                "status": f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
    finally:
        runner.deactivate()
        del runner
        gc.collect()


def _row_child(conn, spec: RowSpec, s: BenchSettings, video: dict, workdir: Path) -> None:
    """The fresh process of one row: progress lines, then the row, through ``conn``."""
    row = _row(spec, s, video, workdir, lambda msg: conn.send(("say", msg)))
    conn.send(("row", row))
    conn.close()


def _row_in_fresh_process(spec: RowSpec, s: BenchSettings, video: dict, workdir: Path, say) -> dict:
    """:func:`_row` in a new (spawned) process, so that its peak RSS is its own: a process's
    high-water mark only resets to the current RSS, and memory an earlier row's libraries keep
    (allocator arenas, thread pools, loaded kernels) would be charged to this one."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_row_child, args=(send, spec, s, video, workdir), name=f"avs-bench {spec.label}")
    proc.start()
    send.close()
    row = None
    while True:
        try:
            kind, payload = receive.recv()
        except EOFError:  # the child is gone
            break
        if kind == "say":
            say(payload)
        else:
            row = payload
    proc.join()
    if row is None:  # killed (out of memory?) before it could answer
        why = f"failed: the row's process ended with exit code {proc.exitcode} before reporting (killed for memory?)"
        say(f"{spec.label}: {why}")
        row = {"label": spec.label, "backend": spec.backend, "precision": spec.precision, "status": why}
    return row


# ------------------------------------------------------------------------------ the run


def run_benchmark(s: BenchSettings, progress=None) -> dict:
    """Measure every row of ``s``; returns the report (see :mod:`avs_engine.bench.schema`)."""
    say = progress or (lambda msg: None)
    cfg = resolve(s.preset)
    started = now_utc()
    machine = machine_info()
    flops = stage_flops(cfg, s.T)
    workdir = Path(tempfile.mkdtemp(prefix="avs-bench-"))
    rows, peaks = [], {}
    try:
        w, h = s.video_size
        say(f"generating a {s.T} s {w}x{h} {s.fps} fps test video")
        video = make_bench_video(workdir / "clip.mp4", s.T, s.fps, (w, h))
        for spec in s.rows:
            say(f"{spec.label}: activating" + (" (a fresh process)" if s.fresh_process else ""))
            row = (_row_in_fresh_process if s.fresh_process else _row)(spec, s, video, workdir, say)
            rows.append(row)
            if row["status"] != "ok":
                continue
            if spec.precision == "int8" and not s.device.startswith("cpu"):
                peaks.setdefault("int8", "not measured: int8 graphs run on the CPU only")
            if spec.precision not in peaks:
                try:
                    peaks[spec.precision] = _peak(s.device, spec.precision, s.peak_budget_s)
                except Exception as e:  # a precision this machine cannot multiply in
                    peaks[spec.precision] = f"not measured: {type(e).__name__}: {e}"
        _add_ratios_and_efficiency(rows, flops, peaks)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    video = {k: v for k, v in video.items() if k not in ("path", "bytes")}
    return {
        "schema": SCHEMA,
        "kind": "stages",
        "command": s.command,
        "date": started,
        "finished": now_utc(),
        "machine": {**machine, "load_average_1min_at_end": fig(os.getloadavg()[0], "runnable tasks", 2)},
        "versions": versions(),
        "settings": {
            "preset": s.preset, "T": s.T, "runs": s.runs, "warmup": s.warmup, "device": s.device,
            "precisions": sorted({r.precision for r in s.rows}), "resize": s.resize, "overlay": s.overlay,
            "cpu_threads": str(s.threads) if s.threads else "each library's default",
            "row_process": "a fresh process per row" if s.fresh_process else "one process for all rows",
            "image_size": fig(cfg.encoder.img_size, "px"),
            "weights": str(s.weights) if s.weights else "random initialisation (seed 0): speed does not depend on the values",
            "engine_dir": str(s.engine_dir) if s.engine_dir else None,
            "video": {"width": video["width"], "height": video["height"], "fps": fig(video["fps"], "frames/s"),
                      "seconds": fig(video["seconds"], "s"), "n_frames": video["n_frames"],
                      "sample_rate": fig(video["sample_rate"], "Hz"), "channels": video["channels"],
                      "codec": "H.264 (libx264 ultrafast) + AAC, generated"},
        },
        "reference": REFERENCE,
        "flops": {k: fig(v / 1e9, "GFLOP per clip", 6) for k, v in flops.items()},
        "matmul_peak": peaks,
        "rows": rows,
        "notes": _notes(s),
    }


def _peak(device: str, precision: str, budget_s: float) -> dict:
    from .peak import measure_matmul_peak

    return measure_matmul_peak(device, precision, budget_s=budget_s)


def _notes(s: BenchSettings) -> list[str]:
    notes = [
        "Times are per clip of T seconds (one frame per second); median and p90 over the measured runs, "
        "warm-up runs reported apart. With few runs p90 is interpolated between the slowest runs.",
        "Model stage times come from the runner's own clock inside its clip method (the one avs-run and "
        "avs-eval use): intermediates stay where the backend keeps them; the image and log-mel go in and "
        "the logits come out as numpy arrays (timed in the first and last stage).",
        "FLOPs: multiply-adds of every matrix product and convolution the PyTorch reference executes, x2 "
        "(avs_engine.bench.flops); the fusion figure is the reference's expanded work, not the fused path's floor.",
        "Peak RSS per stage: the process's resident-set high-water mark during that stage (model weights included)"
        + ("; each row runs in a fresh process, so no row carries an earlier row's memory." if s.fresh_process
           else "; all rows share one process, so a row's figures include what earlier rows left allocated."),
        "ratio_to_reference: this row's median time / the torch:float32 row's median time (< 1 is faster).",
        "clip = the stages run one after another; avs-run overlaps decoding the next clip with inference "
        "(its real-time factor is in the streaming report).",
    ]
    if s.device == "cpu":
        notes.append("CPU machine: timings are sensitive to other load; see machine.load_average_1min at start and end.")
    return notes


__all__ = ["BenchSettings", "RowSpec", "run_benchmark", "run_clip", "STAGES", "TOTALS", "REFERENCE", "SCHEMA", "fig"]
