"""avs-run sequential vs avs-batch (Ray Data, 1 and 2 actors) vs avs-serve (Ray Serve) on generated videos.

    python benchmarks/ray_bench.py --out benchmarks/ray_scale --videos 20 --seconds 10 --repeats 3

Each configuration runs as its own process tree (a fresh local Ray for every
avs-batch run, as a user starts it), interleaved across repeats so that load
from other work on the machine spreads over all of them; every run samples
the RSS of every process in its tree (per process kind: driver, raylet,
actors, task workers...). The Serve part starts avs-serve once and sends the
videos as uploads with 1, 2 and 4 concurrent clients. Writes OUT.json (every
run, medians, machine, versions, load averages) and prints the Markdown tables.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from avs_engine.bench.machine import machine_info, now_utc, versions


# -- process-tree memory ---------------------------------------------------------------------------------------

def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def _tree(root: int) -> list[int]:
    kids, out, todo = _children_map(), [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def _rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _kind(titles: set[str], is_root: bool) -> str:
    """What a process is, from the command lines it showed (Ray workers retitle themselves ray::<task or actor>)."""
    if is_root:
        return "driver (the command)"
    for t in titles:
        if t.startswith("ray::"):
            name = t[5:]
            for kind, pat in (("inference actor", "InferenceActor"), ("serve model replica", "Segmenter"),
                              ("serve HTTP replica", "Ingress"), ("serve proxy", "ProxyActor"),
                              ("serve controller", "ServeController")):
                if pat in name:
                    return kind
            if "decode_video" in name or "write_video" in name:
                return "task worker (decode, write)"
    for t in titles:
        first = Path(t.split(" ", 1)[0]).name if t else ""
        if first in ("raylet", "gcs_server"):
            return first
        if "default_worker.py" in t or any(x.startswith("ray::") for x in titles):
            return "ray worker (idle)"
        script = Path(t.split(" ")[1]).name if len(t.split(" ")) > 1 else ""
        if re.search(r"agent|monitor|dashboard|log_", script + " " + first):
            return "ray agents and monitors"
    return "other"


class TreeMemory:
    """Samples the RSS of every process under ``root`` every ``every_s`` seconds, on a thread."""

    def __init__(self, root: int, every_s: float = 0.2) -> None:
        self.root, self.every_s = root, every_s
        self.peak: dict[int, float] = {}
        self.titles: dict[int, set[str]] = {}
        self.peak_total = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = 0.0
            for pid in _tree(self.root):
                rss = _rss_mib(pid)
                if rss is None:
                    continue
                total += rss
                self.peak[pid] = max(self.peak.get(pid, 0.0), rss)
                self.titles.setdefault(pid, set()).add(_title(pid))
            self.peak_total = max(self.peak_total, total)
            self._stop.wait(self.every_s)

    def stop(self) -> dict:
        self._stop.set()
        self._t.join()
        kinds: dict[str, dict] = {}
        for pid, rss in self.peak.items():
            k = _kind(self.titles.get(pid, set()), pid == self.root)
            d = kinds.setdefault(k, {"processes": 0, "peak_rss_mib": 0.0})
            d["processes"] += 1
            d["peak_rss_mib"] = round(max(d["peak_rss_mib"], rss), 1)
        return {"per_kind": kinds, "peak_sum_rss_mib": round(self.peak_total, 1)}


def run_tree(cmd: list[str], env=None) -> dict:
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    mem = TreeMemory(proc.pid)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    memory = mem.stop()
    if proc.returncode not in (0, 1) or not out.strip().startswith(b"{"):
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err.decode()[-3000:]}")
    return {"wall_s": round(wall, 3), "memory": memory, "stdout": out.decode(), "load_1min_before": round(load, 2),
            "load_1min_after": round(os.getloadavg()[0], 2)}


# -- the three ways ------------------------------------------------------------------------------------------

def make_videos(folder: Path, n: int, seconds: int) -> list[Path]:
    from avs_engine.data.video import write_generated_video

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"bench{i:02d}.mp4"
        if not p.exists():
            write_generated_video(p, seed=30_000_500 + i, seconds=seconds)  # 224x224, 16 fps, H.264 + AAC
            (folder / f"bench{i:02d}.json").unlink(missing_ok=True)
        out.append(p)
    return out


def avs_run(folder: Path, work: Path, rep: int) -> dict:
    shutil.rmtree(work / f"avsrun{rep}", ignore_errors=True)
    r = run_tree(["avs-run", str(folder), "--project", str(work / f"avsrun{rep}"), "--no-overlay", "-q", "--json"])
    docs = json.loads(r.pop("stdout"))["videos"]
    video_s = sum(d["duration_s"] for d in docs)
    stages: dict[str, float] = {}
    for d in docs:
        for k, v in d["timings"]["stages"].items():
            stages[k] = stages.get(k, 0.0) + v["total_s"]
    return {**r, "video_s": video_s, "video_s_per_s": round(video_s / r["wall_s"], 3),
            "stages_ms_per_video_s": {k: round(v * 1e3 / video_s, 2) for k, v in stages.items()}}


def avs_batch(folder: Path, work: Path, rep: int, actors: int) -> dict:
    out = work / f"batch{actors}_{rep}"
    shutil.rmtree(out, ignore_errors=True)  # a folder from an earlier run would make this one skip every video
    r = run_tree(["avs-batch", str(folder), "--out", str(out), "--actors", str(actors), "--num-cpus", "2",
                  "--object-store-mb", "1000", "--json", "-q"])
    s = json.loads(r.pop("stdout"))
    video_s = s["seconds_of_video"]
    if s["videos"]["done"] != len(list(folder.glob("*.mp4"))):
        raise RuntimeError(f"avs-batch did {s['videos']} in {out}, not every video")
    return {**r, "video_s": video_s, "video_s_per_s": round(video_s / r["wall_s"], 3),
            "job_wall_s": s["wall_s"], "job_video_s_per_s": s["video_s_per_s"], "plan": s["plan"],
            "ray_start_s": s["phases"].get("ray_start_s"), "first_result_s": s["phases"].get("first_result_s"),
            "pipeline_s": s["phases"].get("pipeline_s"), "pipeline_video_s_per_s": s.get("pipeline_video_s_per_s"),
            "stages_ms_per_video_s": {k: round(v * 1e3 / video_s, 2) for k, v in s["stages_s"].items()},
            "ray_stats": (out / "ray_stats.txt").read_text() if (out / "ray_stats.txt").exists() else ""}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, data: bytes) -> tuple[float, dict]:
    t0 = time.perf_counter()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "video/mp4"}, method="POST")
    with urllib.request.urlopen(req, timeout=300) as r:
        doc = json.loads(r.read())
    return time.perf_counter() - t0, doc


def serve_bench(videos: list[Path], repeats: int, seconds_each: float, concurrency=(1, 2, 4)) -> dict:
    port = _free_port()
    load = os.getloadavg()[0]
    proc = subprocess.Popen(["avs-serve", "--port", str(port), "--num-cpus", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    mem = TreeMemory(proc.pid)
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    try:
        while True:
            try:
                with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
                    if json.loads(r.read())["status"] == "ok":
                        break
            except Exception:
                if proc.poll() is not None or time.perf_counter() - t0 > 180:
                    raise RuntimeError("avs-serve did not come up: " + proc.stderr.read().decode()[-2000:])
                time.sleep(0.5)
        startup = time.perf_counter() - t0
        data = [v.read_bytes() for v in videos]
        seconds = float(seconds_each)
        for d in data[:2]:  # warm-up
            _post(base + "/v1/segment", d)
        runs = []
        for rep in range(repeats):
            for c in concurrency:
                la = os.getloadavg()[0]
                t1 = time.perf_counter()
                with cf.ThreadPoolExecutor(c) as pool:
                    answers = list(pool.map(lambda d: _post(base + "/v1/segment", d), data))
                wall = time.perf_counter() - t1
                lat = sorted(a[0] for a in answers)
                runs.append({"repeat": rep, "clients": c, "requests": len(lat), "wall_s": round(wall, 3),
                             "median_s": round(statistics.median(lat), 4),
                             "p90_s": round(lat[min(len(lat) - 1, int(round(0.9 * (len(lat) - 1))))], 4),
                             "requests_per_s": round(len(lat) / wall, 3),
                             "video_s_per_s": round(len(lat) * seconds / wall, 3),
                             "largest_batch_clips": max(a[1]["batching"]["largest_batch_clips"] for a in answers),
                             "server_timings_median_s": {k: round(statistics.median(a[1]["timings"][k] for a in answers), 4)
                                                         for k in answers[0][1]["timings"]},
                             "load_1min_before": round(la, 2)})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        memory = mem.stop()
    return {"startup_s": round(startup, 2), "runs": runs, "memory": memory, "load_1min_before": round(load, 2)}


# -- report ---------------------------------------------------------------------------------------------------

def _median(runs: list[dict], key: str):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return round(statistics.median(vals), 3) if vals else None


def summarise(report: dict) -> dict:
    out = {}
    for name, runs in report["batch"].items():
        out[name] = {k: _median(runs, k) for k in ("wall_s", "video_s_per_s", "job_wall_s", "job_video_s_per_s",
                                                     "ray_start_s", "first_result_s", "pipeline_s",
                                                     "pipeline_video_s_per_s", "load_1min_before")}
        out[name]["peak_sum_rss_mib"] = round(statistics.median(r["memory"]["peak_sum_rss_mib"] for r in runs), 1)
        kinds = sorted({k for r in runs for k in r["memory"]["per_kind"]})
        out[name]["peak_rss_mib_per_kind"] = {
            k: round(statistics.median(r["memory"]["per_kind"][k]["peak_rss_mib"] for r in runs if k in r["memory"]["per_kind"]), 1)
            for k in kinds}
        out[name]["processes_per_kind"] = {k: max(r["memory"]["per_kind"].get(k, {}).get("processes", 0) for r in runs)
                                           for k in kinds}
        stages = sorted({k for r in runs for k in r["stages_ms_per_video_s"]})
        out[name]["stages_ms_per_video_s"] = {
            k: round(statistics.median(r["stages_ms_per_video_s"].get(k, 0.0) for r in runs), 2) for k in stages}
    serve = {}
    for c in sorted({r["clients"] for r in report["serve"].get("runs", [])}):
        runs = [r for r in report["serve"]["runs"] if r["clients"] == c]
        serve[c] = {k: _median(runs, k) for k in ("median_s", "p90_s", "requests_per_s", "video_s_per_s",
                                                    "largest_batch_clips", "load_1min_before")}
        serve[c]["server_timings_median_s"] = {
            k: round(statistics.median(r["server_timings_median_s"][k] for r in runs), 4)
            for k in runs[0]["server_timings_median_s"]}
    out["serve"] = serve
    return out


def markdown(report: dict) -> str:
    s = report["summary"]
    lines = ["| way | process wall s | video s per s (process) | Ray start s | first video after s | pipeline s | video s per s (pipeline) | peak RSS, sum over processes MiB | load (1 min) before |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in report["batch"]:
        m = s[name]
        lines.append(f"| {name} | {m['wall_s']} | {m['video_s_per_s']} | {m['ray_start_s'] or '-'} | "
                     f"{m['first_result_s'] or '-'} | {m['pipeline_s'] or '-'} | {m['pipeline_video_s_per_s'] or '-'} | "
                     f"{m['peak_sum_rss_mib']} | {m['load_1min_before']} |")
    lines += ["", "Peak RSS per process (MiB; the largest process of each kind, median of the repeats; processes of that kind):", ""]
    kinds = sorted({k for name in report["batch"] for k in s[name]["peak_rss_mib_per_kind"]})
    lines.append("| process | " + " | ".join(report["batch"]) + " |")
    lines.append("|---|" + "---:|" * len(report["batch"]))
    for k in kinds:
        cells = [f"{s[n]['peak_rss_mib_per_kind'][k]} ({s[n]['processes_per_kind'][k]})" if k in s[n]["peak_rss_mib_per_kind"]
                 else "-" for n in report["batch"]]
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "Busy time per second of video, ms (summed where each stage ran; they overlap):", ""]
    stages = [k for k in ("fetch", "decode", "squash", "preprocess", "audio", "image_encoder", "fusion", "mask_decoder",
                          "postprocess", "write") if any(k in s[n]["stages_ms_per_video_s"] for n in report["batch"])]
    lines.append("| stage | " + " | ".join(report["batch"]) + " |")
    lines.append("|---|" + "---:|" * len(report["batch"]))
    for k in stages:
        lines.append(f"| {k} | " + " | ".join(str(s[n]["stages_ms_per_video_s"].get(k, "-")) for n in report["batch"]) + " |")
    lines += ["", f"avs-serve (one model replica, one HTTP replica), {report['videos']['count']} uploads of {report['videos']['seconds']} s videos per run:", "",
              "| clients | median latency s | p90 latency s | requests per s | video s per s | largest batch (clips) | server: read+decode / model / postprocess s (median) | load before |",
              "|---:|---:|---:|---:|---:|---:|---|---:|"]
    for c, m in s["serve"].items():
        t = m["server_timings_median_s"]
        lines.append(f"| {c} | {m['median_s']} | {m['p90_s']} | {m['requests_per_s']} | {m['video_s_per_s']} | "
                     f"{m['largest_batch_clips']} | {t['read_and_decode_s']} / {t['model_s']} / {t['postprocess_s']} | "
                     f"{m['load_1min_before']} |")
    if not report["serve"]:
        return "\n".join(lines)
    mem = report["serve"]["memory"]["per_kind"]
    lines += ["", "avs-serve peak RSS per process, MiB: " + ", ".join(f"{k} {v['peak_rss_mib']} ({v['processes']})"
                                                                   for k, v in sorted(mem.items()))
              + f"; sum {report['serve']['memory']['peak_sum_rss_mib']} MiB; start-up {report['serve']['startup_s']} s"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/ray_scale", help="OUT.json is written")
    ap.add_argument("--videos", type=int, default=20)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", default=None, help="folder for the videos and outputs (default: a temporary one)")
    ap.add_argument("--skip-serve", action="store_true")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="ray-bench-"))
    folder = work / "videos"
    videos = make_videos(folder, args.videos, args.seconds)
    report = {"date": now_utc(), "machine": machine_info(), "versions": {**versions(), "ray": _ray_version()},
              "videos": {"count": len(videos), "seconds": args.seconds, "size": "224x224", "fps": 16,
                         "codec": "H.264 + AAC (generated sounding objects)"},
              "model": "bundled demo model, ONNX Runtime CPU fp32", "batch": {}, "serve": {}}
    ways = {"avs-run (sequential)": lambda rep: avs_run(folder, work, rep),
            "avs-batch, 1 actor": lambda rep: avs_batch(folder, work, rep, 1),
            "avs-batch, 2 actors": lambda rep: avs_batch(folder, work, rep, 2)}
    report["failed_runs"] = []
    for rep in range(args.repeats):
        for name, fn in ways.items():
            try:
                r = fn(rep)
            except RuntimeError as e:  # kept in the report, and run once more
                report["failed_runs"].append({"way": name, "repeat": rep, "error": str(e)[-3000:]})
                print(f"{name} #{rep} failed, running it again: {str(e)[-500:]}", file=sys.stderr, flush=True)
                r = fn(rep)
            r["repeat"] = rep
            report["batch"].setdefault(name, []).append(r)
            print(f"{name} #{rep}: {r['wall_s']} s, {r['video_s_per_s']} video s/s (load {r['load_1min_before']})",
                  file=sys.stderr, flush=True)
    if not args.skip_serve:
        report["serve"] = serve_bench(videos, args.repeats, args.seconds)
    report["summary"] = summarise(report)
    report["date_finished"] = now_utc()
    Path(args.out + ".json").write_text(json.dumps(report, indent=1) + "\n")
    print(markdown(report))


def _ray_version() -> str:
    try:
        import ray

        return ray.__version__
    except ImportError:
        return "not installed"


if __name__ == "__main__":
    main()
