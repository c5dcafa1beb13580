"""Export: ONNX graphs (FP32, FP16 with float32 islands) and their manifest.

Nothing is imported here: ``manifest`` is read by the torch-free runtime,
while ``onnx_export``, ``wrappers``, ``fp16`` and ``verify`` need torch/onnx.
Entry point: :func:`avs_engine.export.onnx_export.export_onnx`.
"""
