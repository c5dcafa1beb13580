"""gpu_check's results as files: the JSON document and a Markdown report, rewritten after every section.

Writing after each section (atomically: a temporary name, then a rename) means a run stopped by a
time limit still leaves every finished section's rows on disk.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from avs_engine.atomic import atomic_target

STAGES = ("audio", "image_encoder", "fusion", "mask_decoder")
_SHOWN_APART = {"section", "name", "median_ms", "min_ms", "max_ms", "first_call_ms", "peak_mib", "peak_gib"}


def _num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _notes(row: dict, skip=()) -> str:
    parts = [f"{k}={_num(v)}" for k, v in row.items() if k not in _SHOWN_APART and k not in skip and v is not None]
    return "; ".join(parts).replace("|", "/")


def _peak(row: dict) -> str:
    if row.get("peak_gib") is not None:
        return f"{row['peak_gib']:.2f} GiB"
    if row.get("peak_mib") is not None:
        return f"{row['peak_mib']:.0f} MiB"
    return ""


def markdown(doc: dict) -> str:
    """The report: environment, the headline table (whole clip, per stage, peak memory), then every
    other row by section."""
    env = doc.get("environment", {})
    lines = ["# gpu_check results", ""]
    for key in ("date", "device", "capability", "memory_gib", "driver", "torch", "torch_cuda", "python",
                "cuda_python", "onnxruntime", "tensorrt", "dry_run", "wall_s"):
        if key in env:
            lines.append(f"- {key}: {env[key]}")
    lines.append(f"- seed: {doc.get('seed')}; failures: {len(doc.get('failures', []))}; "
                 f"skipped for time: {len(doc.get('skipped', []))}")
    rows = doc.get("rows", [])
    head = [r for r in rows if r.get("section") == "headline"]
    if head:
        lines += ["", "## Headline", "",
                  "| route | whole clip, median ms | " + " | ".join(f"{s} ms" for s in STAGES) + " | peak GPU memory | notes |",
                  "|---|---:|" + "---:|" * len(STAGES) + "---:|---|"]
        for r in head:
            stages = " | ".join(_num(r.get(f"{s}_ms")) for s in STAGES)
            notes = _notes(r, skip={f"{s}_ms" for s in STAGES})
            lines.append(f"| {r['name']} | {_num(r.get('median_ms'))} | {stages} | {_peak(r)} | {notes} |")
    sections: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("section") != "headline":
            sections.setdefault(r.get("section", "?"), []).append(r)
    for section, items in sections.items():
        lines += ["", f"## {section}", "", "| name | median ms | first ms | peak | notes |", "|---|---:|---:|---:|---|"]
        for r in items:
            lines.append(f"| {r['name']} | {_num(r.get('median_ms'))} | {_num(r.get('first_call_ms'))} | {_peak(r)} | {_notes(r)} |")
    if doc.get("failures"):
        lines += ["", "## Failures", ""] + [f"- {f}" for f in doc["failures"]]
    if doc.get("skipped"):
        lines += ["", "## Skipped (time budget)", ""] + [f"- {f}" for f in doc["skipped"]]
    return "\n".join(lines) + "\n"


def write_results(doc: dict, json_path: Path, md_path: Path | None) -> None:
    """``doc`` to ``json_path`` and its Markdown to ``md_path`` (None: no Markdown), atomically."""
    text = json.dumps(doc, indent=1, default=str)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_target(json_path) as tmp:
        tmp.write_text(text)
    if md_path is not None:
        with atomic_target(md_path) as tmp:
            tmp.write_text(markdown(doc))
