"""avs-bench: timers, FLOP counts, memory probes, the measurement harness and report writers.

- ``flops``: FLOPs per stage from a ModelConfig (no torch).
- ``timers`` / ``memory`` / ``peak``: clocks that synchronise the device,
  peak RSS and GPU memory, the measured matmul ceiling.
- ``harness``: every stage of one clip per backend, against the torch FP32 reference.
- ``streaming``: avs-run's real-time factor and memory on a short and a long video.
- ``schema`` / ``report`` / ``chart``: the JSON shape, Markdown and PNG.

Importing this package does not import torch; measuring torch rows does.
"""

from .flops import stage_flops
from .harness import BenchSettings, run_benchmark
from .schema import ReportError, validate_report

__all__ = ["stage_flops", "BenchSettings", "run_benchmark", "validate_report", "ReportError"]
