"""Add the INT8 set to an existing export (``avs-export int8 DIR``), without exporting again.

The FP32 graphs in DIR (listed in its manifest, their hashes checked) are quantized by
each stage's plan and checked against the FP32 chain exactly as ``avs-export onnx
--precision fp32,int8`` does (:func:`~avs_engine.export.int8_export.build_int8`), and the
set is listed under ``int8`` in DIR's manifest. Neither PyTorch nor the weights are
needed: a vit_h FP32 export takes minutes, adding its INT8 set only the quantization
and the check.

Nothing half-written is left: the INT8 files are made in a staging folder inside DIR and
moved to ``DIR/int8`` once every stage is done, replacing an earlier INT8 set; the manifest
is rewritten atomically after that, and a failure puts the earlier set back.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable, Sequence

from ..artifacts.graph_manifest import Manifest, read_manifest
from ..artifacts.spec import STAGE_ORDER
from ..errors import ConfigError
from .graph_entries import int8_entries
from .int8_export import build_int8
from .ort_chain import Feeds


def add_int8_set(
    folder: str | Path,
    *,
    calibration: Sequence[Feeds],
    check: Callable,
    threads: int | None = None,
    progress: Callable[[str], None] = lambda msg: None,
) -> Manifest:
    """Quantize and check ``folder``'s FP32 graphs, write ``folder/int8`` and the manifest's ``int8`` set.

    ``calibration`` and ``check`` as for :func:`~avs_engine.export.int8_export.build_int8` (the checks
    package's ``int8_inputs`` makes both). Raises :class:`ConfigError` when the folder has no FP32 set.
    Returns the rewritten manifest."""
    folder = Path(folder)
    manifest = read_manifest(folder)  # every listed file present with its sha256: we quantize what was exported
    if "fp32" not in manifest.precisions:
        raise ConfigError(f"{folder}: no fp32 graphs to quantize (the export has {', '.join(manifest.precisions)}); "
                          "export them with avs-export onnx --precision fp32")
    fp32 = {s: manifest.graph_path("fp32", s) for s in STAGE_ORDER}
    staging = Path(tempfile.mkdtemp(prefix=".int8-staging-", dir=folder))
    target, previous = folder / "int8", staging / "previous-int8"
    try:
        files, records = build_int8(staging, fp32, manifest.model_config(), calibration=calibration, check=check,
                                    threads=threads, progress=progress)
        if target.exists():
            target.rename(previous)
        if (staging / "int8").is_dir():
            (staging / "int8").rename(target)
        try:
            moved = {s: f if f == fp32[s] else target / f.name for s, f in files.items()}
            manifest.graphs["int8"] = int8_entries(folder, moved, records)
            manifest.write(folder)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            if previous.exists():
                previous.rename(target)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress(f"manifest: {manifest.path}")
    return manifest

