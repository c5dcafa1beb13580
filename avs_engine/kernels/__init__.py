"""Fused ST-BAVA fusion and SAM global attention (DESIGN §4).

Submodules, each imported on its own so that nothing heavy loads by accident:

- ``fused_fusion``: the exact-algebra ST-BAVA block in PyTorch and the
  ``fuse_stbava(model)`` module-swap pass (any device, any float dtype).
- ``nvrtc``: CUDA C++ -> CUBIN for the running GPU (NVRTC via cuda-python,
  nvcc as a fallback), with an on-disk cache. No torch.
- ``launchers``: plain parameter structs (ctypes) and one validating launcher
  per kernel, on raw device pointers and a caller-supplied stream. No torch.
- ``reference_math``: NumPy models of each kernel's tiling and online-softmax
  maths (CPU checks).
- ``torch_ops``: torch glue (``data_ptr`` + current stream) and the
  ``use_cuda_kernels(model)`` pass.

``import avs_engine.kernels`` imports none of them.
"""
