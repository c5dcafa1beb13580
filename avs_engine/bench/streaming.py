"""avs-run while streaming: real-time factor and memory for a short and a long video.

Each video runs through the real ``avs-run`` command in its own process
(``python -c 'avs_engine.cli.run.main()'``), so its peak RSS is that of one
run: the child's own high-water mark (``VmHWM``, polled with VmRSS from
``/proc/<pid>/status`` every 0.2 s; the samples show the curve). Memory must not
grow with the video's length: the report gives both peaks, their ratio and
the growth of the long run's RSS between its second and last quarter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from .harness import fig
from .machine import machine_info, now_utc, versions
from .media import make_bench_video
from .memory import MiB, RssSampler
from .proc import child_env, cli_command



def _label(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds} s"


def run_avs_run(video: Path, args: list[str], workdir: Path) -> dict:
    """One avs-run process on one video: wall time, the child's peak RSS, its RSS samples, its JSON."""
    cmd = cli_command("avs_engine.cli.run", "avs-run", str(video), *args, "--project", str(workdir / "runs"), "--json", "--quiet")
    out_path, err_path = workdir / "stdout.json", workdir / "stderr.txt"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=child_env())
        with RssSampler(proc.pid) as sampler:
            _, status, usage = os.wait4(proc.pid, 0)  # reaps the child: its own rusage, not all children's
        wall = time.perf_counter() - t0
    proc.returncode = code = os.waitstatus_to_exitcode(status)  # already reaped: Popen must not wait again
    return {
        "exit_code": code, "wall_s": wall,
        # the child's own high-water mark as last polled, or the kernel's figure (which may carry the
        # parent's high-water mark) when the child ended before the first poll
        "peak_rss_bytes": sampler.high_water or usage.ru_maxrss * 1024,
        "samples": sampler.samples,
        "stdout": out_path.read_text(), "stderr": err_path.read_text(),
    }


def _video_entry(label: str, info: dict, res: dict) -> dict:
    if res["exit_code"] != 0:
        last = (res["stderr"].strip().splitlines() or ["no message"])[-1]
        return {"label": label, "status": f"failed: avs-run exit code {res['exit_code']}: {last}"}
    doc = json.loads(res["stdout"])
    v = doc["videos"][0]
    timings = v["timings"]
    n_sec = max(len(v["seconds"]), 1)
    t = np.array([s[0] for s in res["samples"]] or [0.0])
    rss = np.array([s[1] for s in res["samples"]] or [0]) / MiB
    quart = [float(rss[min(len(rss) - 1, int(q * (len(rss) - 1)))]) for q in (0.25, 0.5, 0.75, 1.0)]
    step = max(1, len(t) // 300)  # keep the timeline small
    n = len(rss)
    q2, q4 = rss[n // 4: max(n // 2, n // 4 + 1)], rss[(3 * n) // 4:]  # start-up lies in the first quarter
    return {
        "label": label, "status": "ok",
        "seconds": fig(info["seconds"], "s"), "n_frames": info["n_frames"],
        "file_size": fig(info["bytes"] / MiB, "MiB", 2),
        "avs_run_time": fig(timings["total_s"], "s", 3),
        "realtime_factor": fig(timings["realtime_factor"], "s of video per s (avs-run's own, after model load)", 3),
        "process_wall": fig(res["wall_s"], "s", 3),
        "process_realtime_factor": fig(info["seconds"] / res["wall_s"], "s of video per s (whole process, start-up included)", 3),
        "peak_rss": fig(res["peak_rss_bytes"] / MiB, "MiB", 1),
        "rss_quartiles": {"values": [round(q, 1) for q in quart], "unit": "MiB",
                          "at": "VmRSS at 25/50/75/100% of the sampled run"},
        "rss_second_quarter_max": fig(q2.max() if q2.size else rss.max(), "MiB", 1),
        "rss_last_quarter_max": fig(q4.max() if q4.size else rss.max(), "MiB", 1),
        "rss_timeline": {"t": {"values": [round(float(x), 2) for x in t[::step]], "unit": "s"},
                         "rss": {"values": [round(float(x), 1) for x in rss[::step]], "unit": "MiB"}},
        "stages_per_video_second": {k: fig(s["total_s"] * 1e3 / n_sec, "ms per s of video", 3)
                                    for k, s in timings["stages"].items()},
    }


def run_streaming(preset: str = "tiny", T: int = 5, durations: tuple[int, ...] = (10, 600),
                  video_size: tuple[int, int] = (320, 180), fps: int = 25, device: str = "cpu",
                  dtype: str = "float32", overlay: bool = True, command: str | None = None,
                  progress=None) -> dict:
    """avs-run on generated videos of each duration (seconds); returns the streaming report."""
    from ..reference import build_model, save_bundle

    say = progress or (lambda msg: None)
    started, machine = now_utc(), machine_info()
    work = Path(tempfile.mkdtemp(prefix="avs-bench-stream-"))
    args = ["-T", str(T), "--device", device, "--dtype", dtype] + ([] if overlay else ["--no-overlay"])
    videos = []
    try:
        bundle = save_bundle(build_model(preset, seed=0), work / f"{preset}.safetensors")
        for seconds in durations:
            label = _label(seconds)
            say(f"{label}: generating the video")
            info = make_bench_video(work / f"video_{seconds}s.mp4", seconds, fps, video_size)
            say(f"{label}: avs-run")
            run_dir = work / f"run_{seconds}"
            run_dir.mkdir()
            res = run_avs_run(Path(info["path"]), ["--weights", str(bundle), *args], run_dir)
            entry = _video_entry(label, info, res)
            videos.append(entry)
            say(f"{label}: {entry['status']}" + (
                f", real-time factor {entry['realtime_factor']['value']}, peak RSS {entry['peak_rss']['value']} MiB"
                if entry["status"] == "ok" else ""))
            Path(info["path"]).unlink()
            shutil.rmtree(run_dir, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    settings = {
        "preset": preset, "T": T, "device": device, "precision": dtype, "overlay": overlay,
        "fps": fig(fps, "frames/s"), "video_size": f"{video_size[0]}x{video_size[1]}",
        "weights": "random initialisation (seed 0), saved as a bundle", "avs_run_args": args,
    }
    return streaming_report(videos, settings, started, machine, command)


def streaming_report(videos: list[dict], settings: dict, started: str, machine: dict, command: str | None) -> dict:
    """The streaming report around the per-video entries."""
    return {
        "schema": "avs-bench/1", "kind": "streaming", "command": command,
        "date": started, "finished": now_utc(),
        "machine": {**machine, "load_average_1min_at_end": fig(os.getloadavg()[0], "runnable tasks", 2)},
        "versions": versions(),
        "settings": settings,
        "videos": videos,
        "memory_flat": _flatness(videos),
        "notes": [
            "Each video runs in a fresh avs-run process; peak RSS is the kernel's maximum resident set of that "
            "process (its VmHWM, polled every 0.2 s with the VmRSS timeline).",
            "real-time factor = seconds of video / seconds avs-run spent on the video (decode, model, "
            "post-processing, writing masks and overlay), as avs-run's result.json reports it; the process "
            "figure includes interpreter start-up and model loading.",
            "Videos are generated (H.264 ultrafast + AAC, a moving square over a colour per second).",
        ],
    }


def _flatness(videos: list[dict]) -> dict:
    ok = [v for v in videos if v["status"] == "ok"]
    if len(ok) < 2:
        return {"statement": "not measured: fewer than two videos ran"}
    short, long_ = ok[0], ok[-1]
    ratio = long_["peak_rss"]["value"] / short["peak_rss"]["value"]
    growth = long_["rss_last_quarter_max"]["value"] - long_["rss_second_quarter_max"]["value"]
    return {
        "peak_rss_short": short["peak_rss"], "peak_rss_long": long_["peak_rss"],
        "peak_ratio_long_to_short": fig(ratio, "x", 3),
        "long_run_growth": fig(growth, "MiB (max VmRSS in the last quarter - in the second quarter of the long run)", 1),
        "statement": (
            f"Peak RSS {short['peak_rss']['value']:.0f} MiB for {short['label']} and "
            f"{long_['peak_rss']['value']:.0f} MiB for {long_['label']} (x{ratio:.3f}). During the {long_['label']} run "
            f"the highest RSS of its last quarter is {growth:+.1f} MiB from that of its second quarter "
            f"(the first quarter holds interpreter start-up and model loading)."
        ),
    }
