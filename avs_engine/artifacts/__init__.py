"""What the runtime reads: the stages' I/O declaration, the graph and engine manifests, profiles and buffer sizes.

Both sides import this package: ``export`` writes these files, ``backends``
and ``runtime`` read them. It imports neither of them, nor torch, nor the
media libraries (numpy, json and the standard library only).

- ``spec``: the four stages' input/output names, dtypes and symbolic shapes.
- ``graph_manifest``: ``manifest.json`` of an ONNX folder (``avs-export onnx``).
- ``engine_manifest``: ``engines.json`` of a TensorRT folder (``avs-export build``)
  and the rules for refusing an engine built for another GPU or TensorRT.
- ``profiles``: clip-length ranges, optimisation-profile shapes and the device
  buffer plan of a whole clip.
"""
