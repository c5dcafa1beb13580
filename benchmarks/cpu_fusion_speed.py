"""CPU speed of one ST-BAVA block: the reference ``AVFusionBlock`` vs the exact-algebra
``FusedAVFusionBlock`` at vit_h shapes (T=5, 4096 pixels, C=256, 8 heads), float32 eager.

    python benchmarks/cpu_fusion_speed.py [--threads 2] [--reps 7]

Runs alternate (reference, fused, reference, ...) so that load from other processes hits
both alike; prints medians, their ratio, the median of per-pair ratios, and the error.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from avs_engine.exact.fused_fusion import FusedAVFusionBlock
from avs_engine.reference.fusion import AVFusionBlock


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--T", type=int, default=5)
    p.add_argument("--N", type=int, default=4096)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    T, N, C, H = args.T, args.N, 256, 8
    ref = AVFusionBlock(C, H, C).eval()
    fused = FusedAVFusionBlock.from_block(ref)
    a, v, ape, vpe = torch.randn(T, 1, C), torch.randn(T, N, C), torch.randn(T, 1, C), torch.randn(1, N, C)
    times = {"reference": [], "fused": []}
    with torch.inference_mode():
        (v_ref, a_ref), (v_f, a_f) = ref(a, v, ape, vpe), fused(a, v, ape, vpe)  # warm-up, and the error
        for _ in range(args.reps):
            for name, block in (("reference", ref), ("fused", fused)):
                t0 = time.perf_counter()
                block(a, v, ape, vpe)
                times[name].append(time.perf_counter() - t0)
    err = max(((v_f - v_ref).norm() / v_ref.norm()).item(), ((a_f - a_ref).norm() / a_ref.norm()).item())
    med = {k: statistics.median(x) for k, x in times.items()}
    pairs = statistics.median(r / f for r, f in zip(times["reference"], times["fused"]))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, torch {torch.__version__}, "
          f"{args.threads} threads, T={T} N={N} C={C} heads={H}, fp32 eager, {args.reps} alternating runs")
    print(f"reference {med['reference'] * 1e3:.0f} ms, fused {med['fused'] * 1e3:.0f} ms per block: "
          f"{med['reference'] / med['fused']:.2f}x (median of per-pair ratios {pairs:.2f}x); rel L2 error {err:.1e}")


if __name__ == "__main__":
    main()
