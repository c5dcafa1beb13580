"""Development tools for the CUDA kernels; not part of the installed package.

- ``emulator``: runs the kernels' CUDA C++ source on the CPU (host compiler,
  one fiber per CUDA thread, warp-level primitives emulated), for tests
  without a GPU.
- ``host_emulation``: the kernels' launch interface backed by their NumPy
  models (``avs_engine.kernels.reference_math``).
- ``ptxas``: the register / shared-memory report of every kernel variant
  (``python -m devtools.ptxas`` rewrites ``benchmarks/kernels_ptxas.txt``).

The test suite and ``benchmarks/gpu_check.py --dry-run`` use them from a
checkout of the repository; a runtime install neither has nor needs them.
"""
