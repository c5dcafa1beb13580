"""avs-engine: deployment engine for ST-BAVA audio-visual segmentation.

The package root imports nothing heavy: ``import avs_engine`` never pulls torch.
"""

__version__ = "0.1.0"
