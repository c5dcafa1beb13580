"""The machine's matrix-product ceiling, measured in the same run as the stages.

A ceiling is the fastest product the machine runs in that precision, so on a
CPU several candidates are measured and the best is the figure: square
products of several sizes, with torch's kernel and with ONNX Runtime's (MLAS,
the one the onnxruntime rows use; a constant right operand, pre-packed as in
the graphs), float32 and int8 (torch ``_int_mm``; ONNX Runtime
``MatMulInteger`` uint8 x int8 -> int32, the kernel of the dynamic INT8
graphs). One size or one library alone is no ceiling: on the 2-core EPYCs
here a 1024-cube torch float32 product ran slower than ONNX Runtime's own
GEMM, and the onnxruntime rows read "172% of peak". Each candidate is the
best of several repetitions; CUDA events on a GPU, a synchronised host clock
otherwise. Each stage's achieved rate is compared with the ceiling of its own
precision.
"""

from __future__ import annotations

import time

from .timers import CudaEventTimer, HostTimer

CPU_SIZES = (1024, 2048, 3072)  # square products tried on a CPU (the encoders' GEMMs are 4096 x 768..5120)


def _best_of(fn, timer, reps: int, budget_s: float) -> tuple[float, int]:
    """(best seconds, repetitions) of ``fn`` after one untimed call, within ``budget_s``."""
    fn()  # warm-up: kernel selection, thread pool start, packing
    best, done, t_start = float("inf"), 0, time.perf_counter()
    while done < reps and (time.perf_counter() - t_start) < budget_s:
        with timer.measure() as iv:
            fn()
        best = min(best, iv.seconds)
        done += 1
    return best, done


def _torch_candidate(torch, dev, dtype: str, n: int, timer, reps: int, budget_s: float) -> dict:
    gen = torch.Generator(device="cpu").manual_seed(0)
    if dtype == "int8":
        if dev.type != "cpu":
            raise RuntimeError("int8 products are measured on the CPU only")
        a = torch.randint(-128, 127, (n, n), generator=gen, dtype=torch.int8)
        b = torch.randint(-128, 127, (n, n), generator=gen, dtype=torch.int8)
        fn = lambda: torch._int_mm(a, b)  # noqa: E731
        what = "torch._int_mm"
    else:
        dt = getattr(torch, dtype)
        a = torch.randn(n, n, generator=gen).to(dev, dt)
        b = torch.randn(n, n, generator=gen).to(dev, dt)
        fn = lambda: torch.matmul(a, b)  # noqa: E731
        what = "torch.matmul"
    with torch.inference_mode():
        best, done = _best_of(fn, timer, reps, budget_s)
    return {"library": what, "n": n, "tflops": 2.0 * n**3 / best / 1e12, "repetitions": done}


def _ort_candidate(dtype: str, n: int, threads: int | None, reps: int, budget_s: float) -> dict:
    """One square product in ONNX Runtime (CPU provider, graph optimisations as the backend sets them)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if dtype == "int8":
        b = numpy_helper.from_array(rng.integers(-128, 127, (n, n), dtype=np.int8), "b")
        node = helper.make_node("MatMulInteger", ["a", "b"], ["y"])
        a_type, y_type = TensorProto.UINT8, TensorProto.INT32
        a = rng.integers(0, 255, (n, n), dtype=np.uint8)
        what = "onnxruntime MatMulInteger (u8 x s8)"
    else:
        b = numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "b")
        node = helper.make_node("MatMul", ["a", "b"], ["y"])
        a_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
        a = rng.standard_normal((n, n), dtype=np.float32)
        what = "onnxruntime MatMul"
    graph = helper.make_graph([node], "peak", [helper.make_tensor_value_info("a", a_type, [n, n])],
                              [helper.make_tensor_value_info("y", y_type, [n, n])], initializer=[b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    best, done = _best_of(lambda: sess.run(None, {"a": a}), HostTimer(), reps, budget_s)
    return {"library": what, "n": n, "tflops": 2.0 * n**3 / best / 1e12, "repetitions": done}


def measure_matmul_peak(device: str = "cpu", dtype: str = "float32", n: int | None = None,
                        reps: int = 8, budget_s: float = 4.0, sizes: tuple[int, ...] | None = None,
                        libraries: tuple[str, ...] | None = None) -> dict:
    """The best TFLOP/s (TOP/s for int8) of square ``[n,n] @ [n,n]`` products on ``device`` in ``dtype``.

    On a CPU: every size in ``sizes`` (default :data:`CPU_SIZES`; ``n`` alone when given) with
    every library in ``libraries`` (default torch and, for float32 and int8, onnxruntime);
    ``budget_s`` is shared out among them. On a GPU: torch, ``n`` = 8192.
    A precision the hardware has no fast path for (float16 on most CPUs) is measured
    on a size where one product takes at most about the candidate's budget / 2.
    Returns a report fragment: ``{"value", "unit", "n", "repetitions", "clock", "note", "candidates"}``
    (the best candidate's figures; every candidate's library, size and rate or why it was not measured).
    """
    import torch

    dev = torch.device(device)
    cuda = dev.type == "cuda"
    timer = CudaEventTimer(torch, dev) if cuda else HostTimer()
    unit = "TOP/s" if dtype == "int8" else "TFLOP/s"
    if cuda:
        sizes = (n or 8192,)
        libraries = ("torch",)
    else:
        sizes = (n,) if n else (sizes or CPU_SIZES)
        if libraries is None:
            libraries = ("torch", "onnxruntime") if dtype in ("float32", "int8") else ("torch",)
        if dtype not in ("float32", "int8"):  # no fast path on most CPUs: keep one product within budget
            probe = _torch_candidate(torch, dev, dtype, 256, timer, 1, budget_s)
            rate = probe["tflops"] * 1e12
            k = max(sizes)
            while k > 256 and 2.0 * k**3 / rate > budget_s / 2:
                k //= 2
            sizes = (k,)
    sizes = tuple(sorted(sizes))
    per = budget_s / (len(sizes) * len(libraries))
    candidates = []
    for lib in libraries:
        rate = None
        for k in sizes:
            if rate is not None and 2.0 * k**3 / rate > per / 2:  # two products (warm-up + one) would overrun
                candidates.append({"library": lib, "n": k, "error": f"skipped: one product would take over {per / 2:.1f} s"})
                continue
            try:
                if lib == "torch":
                    c = _torch_candidate(torch, dev, dtype, k, timer, reps, per)
                else:
                    c = _ort_candidate(dtype, k, torch.get_num_threads(), reps, per)
                rate = c["tflops"] * 1e12
                candidates.append(c)
            except (ImportError, RuntimeError) as e:  # a library or kernel missing here
                candidates.append({"library": lib, "n": k, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
    ok = [c for c in candidates if "tflops" in c]
    if not ok:
        raise RuntimeError("; ".join(c["error"] for c in candidates))
    best = max(ok, key=lambda c: c["tflops"])
    note = f"{best['library']} {best['n']}x{best['n']}x{best['n']}, best of {best['repetitions']}"
    if len(candidates) > 1:
        note += f"; the fastest of {len(ok)} candidates (" + ", ".join(
            f"{c['library'].split()[0]} {c['n']}: {c['tflops']:.3f}" for c in ok) + ")"
    if cuda and dtype == "float32":
        note += f"; TF32 {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}"
    if not cuda:
        note += f"; {torch.get_num_threads()} threads"
    return {"value": round(best["tflops"], 4), "unit": unit, "n": best["n"], "repetitions": best["repetitions"],
            "clock": timer.kind, "note": note,
            "candidates": [{"library": c["library"], "size": {"value": c["n"], "unit": "n (n x n x n product)"},
                            **({"rate": {"value": round(c["tflops"], 4), "unit": unit}} if "tflops" in c else {"error": c["error"]})}
                           for c in candidates]}
