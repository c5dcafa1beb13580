"""Before/after the one-clip-path runtime: avs-run's real-time factor on the demo, and the tiny preset's whole clip.

Runs ``avs-run`` (torch backend, as both versions support it) from two source
trees in alternation, in one run: ``--before`` and ``--after`` are git
revisions, each checked out into a temporary worktree. Each run is its own
process; the figures come from the run's own ``result.json`` (time from the
first decode to the last write, model load excluded). Medians over
``--repeats`` runs of each.

    python benchmarks/one_path_before_after.py --before a5203f0 --after HEAD --repeats 7
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUN = "import sys; from avs_engine.cli.run import main; sys.argv[0] = 'avs-run'; main()"


def avs_run(tree: Path, video: Path, weights: Path, work: Path, extra: list[str]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    project = Path(tempfile.mkdtemp(dir=work))
    cmd = [sys.executable, "-c", RUN, str(video), "--weights", str(weights), "--backend", "torch",
           "--project", str(project), "--json", "--quiet", *extra]
    out = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    shutil.rmtree(project, ignore_errors=True)
    if out.returncode != 0:
        raise SystemExit(f"avs-run failed in {tree}: {out.stderr.strip().splitlines()[-1:]}")
    return json.loads(out.stdout)["videos"][0]


def summary(runs: list[dict], clip_seconds: int) -> dict:
    total = [r["timings"]["total_s"] for r in runs]
    rtf = [r["timings"]["realtime_factor"] for r in runs]
    n_clips = [max(1, -(-r["n_seconds"] // clip_seconds)) for r in runs]
    stages = {}
    for name in runs[0]["timings"]["stages"]:
        vals = [r["timings"]["stages"][name]["total_s"] * 1e3 / max(len(r["seconds"]), 1) for r in runs if name in r["timings"]["stages"]]
        stages[name] = round(statistics.median(vals), 2)
    return {
        "total_s_median": round(statistics.median(total), 4),
        "realtime_factor_median": round(statistics.median(rtf), 3),
        "per_clip_ms_median": round(statistics.median(t / n * 1e3 for t, n in zip(total, n_clips)), 1),
        "runs_total_s": [round(t, 4) for t in total],
        "stage_ms_per_video_second_median": stages,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="git revision of the 'before' tree")
    ap.add_argument("--after", default="HEAD", help="git revision of the 'after' tree")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "one_path_before_after")
    args = ap.parse_args()

    from avs_engine.bench.machine import machine_info, versions
    from avs_engine.bench.media import make_bench_video

    work = Path(tempfile.mkdtemp(prefix="avs-before-after-"))
    before, after = work / "before", work / "after"
    for tree, rev in ((before, args.before), (after, args.after)):
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=REPO, check=True, capture_output=True)
    try:
        # Written by the older tree: newer configs carry fields the older reader refuses.
        tiny = work / "tiny.safetensors"
        subprocess.run([sys.executable, "-c", "import sys; from avs_engine.reference import build_model, save_bundle; "
                        "save_bundle(build_model('tiny', seed=0), sys.argv[1])", str(tiny)],
                       cwd=before, env=dict(os.environ, PYTHONPATH=str(before)), check=True)
        clip = make_bench_video(work / "clip.mp4", 5, 25, (640, 360))
        cases = {
            "demo": (after / "demo" / "demo.mp4", after / "avs_engine" / "models" / "demo.safetensors", [], 5),
            "tiny_clip": (Path(clip["path"]), tiny, ["-T", "5"], 5),
        }
        results: dict = {name: {"before": [], "after": []} for name in cases}
        for i in range(args.repeats + 1):  # the first round warms the file cache; not counted
            for name, (video, weights, extra, _) in cases.items():
                for label, tree in (("before", before), ("after", after)):
                    r = avs_run(tree, video, weights, work, extra)
                    if i:
                        results[name][label].append(r)
                    print(f"round {i} {name} {label}: {r['timings']['total_s']:.3f} s", file=sys.stderr)
        doc = {
            "what": "avs-run (torch backend, FP32, overlay on) before and after the three-piece runtime; "
                    "figures from each run's result.json, medians",
            "before": args.before,
            "after": subprocess.run(["git", "rev-parse", "--short", args.after], cwd=REPO, capture_output=True,
                                    text=True).stdout.strip(),
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_info(), "versions": versions(), "platform": platform.platform(),
            "load_average_1min_at_end": os.getloadavg()[0],
            "repeats": args.repeats,
            "cases": {
                "demo": "demo/demo.mp4 (8 s, 224x224, 16 fps), the bundled demo model, T = 5",
                "tiny_clip": "a generated 5 s 640x360 25 fps video, tiny preset (random weights), T = 5: one clip",
            },
            "results": {name: {label: summary(runs, cases[name][3]) for label, runs in v.items()} for name, v in results.items()},
        }
        for name, v in doc["results"].items():
            v["speedup_total"] = round(v["before"]["total_s_median"] / v["after"]["total_s_median"], 3)
        args.out.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
        print(json.dumps({k: v["speedup_total"] for k, v in doc["results"].items()}), file=sys.stderr)
    finally:
        for tree in (before, after):
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
