"""Weights shipped with the package.

``demo.safetensors``: a small ST-BAVA (the ``demo`` config, about 1 M
parameters, 128x128 input) trained from scratch on generated sounding-object
videos by ``avs-train --config avs_engine/models/demo_preset.json
--generated``. It knows the generator's eight object kinds, not the real
world: it is there so that avs-run shows real masks on a fresh machine,
offline, on a CPU (try it on ``demo/demo.mp4``).

``demo_onnx/``: the same model exported to ONNX (FP32, and FP16 with float32
islands) with its ``manifest.json``, which records the sha256 of
``demo.safetensors``. ``avs-run`` runs these graphs on ONNX Runtime when no
model option is given, so the demo needs no torch. After retraining the demo
model, rebuild them with the one command in ``README.md`` beside this file:

    avs-export onnx --weights avs_engine/models/demo.safetensors --out avs_engine/models/demo_onnx --precision fp32,fp16

(a test checks that the manifest's weights hash is the file's).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO_WEIGHTS = HERE / "demo.safetensors"
DEMO_PRESET = HERE / "demo_preset.json"
DEMO_GRAPHS = HERE / "demo_onnx"

__all__ = ["DEMO_WEIGHTS", "DEMO_PRESET", "DEMO_GRAPHS"]
