"""Checks that compare one backend against another; they sit above ``export`` and ``backends``.

- ``compare``: relative L2 error, per-frame mask IoU, seeded random clips (numpy only).
- ``onnx_parity``: every exported graph on ONNX Runtime against the PyTorch reference.
- ``trt_check``: TensorRT engines against the ONNX graphs on ONNX Runtime, stage by stage and whole clips.
"""
