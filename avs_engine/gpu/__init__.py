"""Thin wrappers over the NVIDIA libraries, shared by the export side and the backends.

- ``cuda_memory``: cuda-python device/pinned buffers, streams, events, CUDA graphs.
- ``tensorrt_api``: ``import tensorrt`` with a one-line error, and a logger that keeps errors.

Each imports its library inside the functions that need it: importing this
package loads neither cuda-python nor TensorRT.
"""
