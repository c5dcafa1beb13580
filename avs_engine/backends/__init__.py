"""Backends: one small runner interface (``base.Runner``), one module per framework.

Each backend imports its framework lazily, inside ``activate()``: importing
this package never pulls torch, onnxruntime or tensorrt.
"""

from .base import Runner, available_backends, create_runner

__all__ = ["Runner", "available_backends", "create_runner"]
