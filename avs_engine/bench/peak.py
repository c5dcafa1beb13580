"""The machine's matrix-product ceiling, measured in the same run as the stages.

A square ``torch.matmul`` per precision, best of several repetitions (a
ceiling, so the best is the figure); CUDA events on a GPU, a synchronised
host clock otherwise. Each stage's achieved TFLOP/s is compared with the
ceiling of its own precision.
"""

from __future__ import annotations

import time

from .timers import CudaEventTimer, HostTimer


def measure_matmul_peak(device: str = "cpu", dtype: str = "float32", n: int | None = None,
                        reps: int = 8, budget_s: float = 4.0) -> dict:
    """TFLOP/s of ``[n,n] @ [n,n]`` on ``device`` in ``dtype``.

    ``n`` defaults to 1024 on a CPU and 8192 on a GPU. Stops early once
    ``budget_s`` of timed work is spent (slow precisions on a CPU).
    A precision the hardware has no fast path for (float16 on most CPUs) is
    measured on a smaller ``n``, so that one product takes at most
    about ``budget_s / 2``; the note gives ``n``.
    Returns a report fragment: ``{"value", "unit", "n", "repetitions", "clock", "note"}``.
    """
    import torch

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    dt = getattr(torch, dtype)
    timer = CudaEventTimer(torch, dev) if cuda else HostTimer()
    gen = torch.Generator(device="cpu").manual_seed(0)

    def operands(k: int):
        return (torch.randn(k, k, generator=gen).to(dev, dt), torch.randn(k, k, generator=gen).to(dev, dt))

    with torch.inference_mode():
        if n is None and cuda:
            n = 8192
        elif n is None:  # size the product from a small probe: at most budget_s / 2 per product
            a, b = operands(256)
            torch.matmul(a, b)
            with timer.measure() as iv:
                torch.matmul(a, b)
            rate = 2.0 * 256**3 / max(iv.seconds, 1e-9)
            n = 1024
            while n > 256 and 2.0 * n**3 / rate > budget_s / 2:
                n //= 2
        a, b = operands(n)
        flop = 2.0 * n**3
        torch.matmul(a, b)  # warm-up: kernel selection, thread pool start
        best, done, spent = float("inf"), 0, 0.0
        t_start = time.perf_counter()
        while done < reps and spent < budget_s:
            with timer.measure() as iv:
                torch.matmul(a, b)
            best = min(best, iv.seconds)
            done += 1
            spent = time.perf_counter() - t_start
    note = f"torch.matmul {n}x{n}x{n}, best of {done}"
    if cuda and dtype == "float32":
        note += f"; TF32 {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}"
    if not cuda:
        note += f"; {torch.get_num_threads()} threads"
    return {"value": round(flop / best / 1e12, 4), "unit": "TFLOP/s", "n": n, "repetitions": done,
            "clock": timer.kind, "note": note}
