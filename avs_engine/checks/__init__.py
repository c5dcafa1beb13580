"""Checks that compare one backend against another. They sit above ``export`` and ``backends`` and import
both; neither imports them (the CLI runs them after an export, and hands the INT8 check to the exporter).

- ``compare``: relative L2 error, per-frame mask IoU, seeded random clips (numpy only).
- ``onnx_parity``: every exported graph on ONNX Runtime against the PyTorch reference (``verify_export``).
- ``int8_check``: each INT8 graph against its FP32 graph on generated clips, by mask IoU.
- ``trt_check``: TensorRT engines against the ONNX graphs on ONNX Runtime, stage by stage and whole clips.
"""
