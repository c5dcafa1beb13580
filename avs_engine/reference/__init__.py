"""The PyTorch reference ST-BAVA model (docs/model.md): everything else is checked against it.

Public API::

    from avs_engine.reference import build_model, load_checkpoint, save_bundle, load_bundle
    model = build_model("tiny")                      # random init
    model = build_model("vit_h", device="meta")      # no memory; load weights with assign=True
    report = load_checkpoint(model, "stbava_s4.pth", vggish="vggish.pth")
"""

from .build import build_model
from .checkpoint import LoadReport, load_bundle, load_checkpoint, save_authors_checkpoint, save_bundle
from .model import STBAVA

__all__ = [
    "STBAVA",
    "LoadReport",
    "build_model",
    "load_bundle",
    "load_checkpoint",
    "save_authors_checkpoint",
    "save_bundle",
]
