"""Weights shipped with the package.

``demo.safetensors``: a small ST-BAVA (the ``demo`` config, about 1 M
parameters, 128x128 input) trained from scratch on generated sounding-object
videos by ``avs-train --preset-file avs_engine/models/demo_preset.json
--generated``. It knows the generator's eight object kinds, not the real
world: it is there so that avs-run shows real masks on a fresh machine,
offline, on a CPU (try it on ``demo/demo.mp4``).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO_WEIGHTS = HERE / "demo.safetensors"
DEMO_PRESET = HERE / "demo_preset.json"

__all__ = ["DEMO_WEIGHTS", "DEMO_PRESET"]
