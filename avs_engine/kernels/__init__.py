"""Fused CUDA kernels (no Triton): sources, compilation and launchers. No torch.

- ``csrc/``: CUDA C++ over plain parameter structs: the ST-BAVA temporal and
  spatial attention reductions, and a flash-attention kernel with SAM's
  decomposed relative-position bias added on the fly.
- ``nvrtc``: CUDA C++ -> CUBIN for the running GPU (NVRTC via cuda-python,
  nvcc as a fallback), with an on-disk cache.
- ``launchers``: plain parameter structs (ctypes) and one validating launcher
  per kernel, on raw device pointers and a caller-supplied stream.
- ``reference_math``: NumPy models of each kernel's tiling and online-softmax
  maths (CPU checks).

The PyTorch side (the exact-algebra forms these kernels implement, and the
pass that installs them in a model) is the ``exact`` package. ``import
avs_engine.kernels`` imports none of the submodules.
"""
