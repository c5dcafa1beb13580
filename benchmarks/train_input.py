"""avs-train's input pipeline on a CPU: what building a step's batch costs the training loop.

    python benchmarks/train_input.py [--clips 8] [--steps 6] [--step-s 1.0 3.0] [--json benchmarks/train_input.json]

An AVSBench-layout S4 split of generated clips (224x224 PNG frames, wav audio, masks) is written
to a temporary folder and read back as avs-train reads AVSBench (``StreamingSplit``, frames
resized to 1024x1024 and normalised, log-mel from the wav); batches of 4 clips x 5 frames, vit_b's
input size.

1. One batch built the way the loop did before (frames, log-mel and masks each read for the
   whole batch: the split's one-video cache misses every time) against ``host_batch`` now (each
   video's three reads together): seconds and videos decoded per batch.
2. The main thread's wait for its batch per step with ``--workers 0`` (built between steps) and
   ``--workers 1`` / ``2`` (built ahead), when the step itself takes ``--step-s`` seconds of
   waiting (a stand-in for a GPU step the host only waits for; ``time.sleep``, which frees the
   cores, so the background thread can build meanwhile).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from avs_engine.data import AVSBenchDataset, StreamingSplit  # noqa: E402
from avs_engine.data.avsbench import write_split  # noqa: E402
from avs_engine.data.generator import generate_clip, split_seeds  # noqa: E402
from avs_engine.train.input_pipeline import batch_source, host_batch  # noqa: E402

B, S = 4, 1024


def three_pass_batch(split, idx):
    """The loop's batch before: each array read for the whole batch in turn."""
    images = np.stack([split.image_input(i) for i in idx])
    log_mel = np.stack([split.log_mel_input(i) for i in idx])
    masks = np.stack([split.masks(i) for i in idx])
    return images, log_mel, masks


def counting(split):
    """Count the videos the split decodes."""
    ds = split.dataset
    real = type(ds).__getitem__
    count = [0]

    class Counting(type(ds)):
        def __getitem__(self, i):
            count[0] += 1
            return real(self, i)

    ds.__class__ = Counting
    return count


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--step-s", type=float, nargs="+", default=[1.0, 3.0], help="step durations to try")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "host": platform.node(),
                       "load_avg_start": os.getloadavg()},
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "batch": f"{B} clips x 5 frames, {S}x{S}"}
    with tempfile.TemporaryDirectory() as tmp:
        write_split(tmp, "s4", "val", [generate_clip(s) for s in split_seeds("val", a.clips)])
        split = StreamingSplit(AVSBenchDataset(tmp, "s4", "val"), S)
        decoded = counting(split)
        rng = np.random.default_rng(0)
        batches = [rng.permutation(a.clips)[:B] for _ in range(a.steps)]

        rows = {}
        for name, build in (("three reads per video (before)", three_pass_batch), ("host_batch (now)", host_batch)):
            times, counts = [], []
            for idx in batches[:3]:
                split._last.__dict__.clear()
                decoded[0] = 0
                t0 = time.perf_counter()
                build(split, idx)
                times.append(time.perf_counter() - t0)
                counts.append(decoded[0])
            rows[name] = {"seconds_median": statistics.median(times), "videos_decoded_per_batch": statistics.median(counts)}
            print(f"{name}: {rows[name]['seconds_median']:.2f} s per batch, {rows[name]['videos_decoded_per_batch']} decodes")
        out["build_one_batch"] = rows

        out["step_wait"] = []
        for step_s in a.step_s:
            waits = {}
            for workers in (0, 1, 2):
                split._last.__dict__.clear()
                wait = []
                t_run = time.perf_counter()
                with batch_source(split, batches, workers=workers, depth=2) as source:
                    for _ in batches:
                        t0 = time.perf_counter()
                        next(source)
                        wait.append(time.perf_counter() - t0)
                        time.sleep(step_s)
                total = time.perf_counter() - t_run
                waits[f"workers={workers}"] = {"first_wait_s": wait[0], "later_wait_s_median": statistics.median(wait[1:]),
                                               "seconds_per_step": total / len(batches)}
                print(f"step {step_s} s, workers={workers}: first batch {wait[0]:.2f} s, then "
                      f"{statistics.median(wait[1:]):.3f} s wait per step; {total / len(batches):.2f} s per step")
            out["step_wait"].append({"step_s": step_s, "steps": a.steps, **waits})
    out["machine"]["load_avg_end"] = os.getloadavg()
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
        print(f"Results saved to {a.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
