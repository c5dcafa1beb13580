"""The shape of an avs-bench report, checked without a schema library.

Rules: the required keys are there; every number is a figure (the
``value`` of a dict with a ``unit``, or an item of its ``values``), except
plain counts under the keys in :data:`COUNT_KEYS`; the first row is the
reference; a row is ``ok`` with every stage measured, or says
``not available: <reason>`` / ``failed: <reason>`` and carries no timings
(never zeros).
"""

from __future__ import annotations

from numbers import Number

from ..errors import ReportError

COUNT_KEYS = frozenset({
    "T", "runs", "warmup", "n", "repetitions", "cores", "cores_usable", "width", "height",
    "n_frames", "channels", "calls", "clips",
})
_TOP = {
    "stages": ("schema", "kind", "command", "date", "machine", "versions", "settings", "reference",
               "flops", "matmul_peak", "rows", "notes"),
    "streaming": ("schema", "kind", "command", "date", "machine", "versions", "settings", "videos", "memory_flat", "notes"),
}
_MACHINE = ("cpu", "cores", "cores_usable", "gpus")
_ROW_OK = ("label", "backend", "precision", "status", "runner", "warmup", "stages", "totals", "throughput", "memory")
_STAT = ("median", "p90", "runs", "ratio_to_reference")


def _is_num(x) -> bool:
    return isinstance(x, Number) and not isinstance(x, bool)


def _units(node, path: str, problems: list[str]) -> None:
    if isinstance(node, dict):
        if "unit" in node:
            if not isinstance(node["unit"], str) or not node["unit"]:
                problems.append(f"{path}: 'unit' must be a non-empty string")
            if "value" not in node and "values" not in node:
                problems.append(f"{path}: a figure needs 'value' or 'values' beside its unit")
            if "value" in node and node["value"] is not None and not _is_num(node["value"]):
                problems.append(f"{path}.value: expected a number, got {type(node['value']).__name__}")
            if "values" in node and not all(_is_num(v) for v in node["values"]):
                problems.append(f"{path}.values: expected numbers")
            rest = {k: v for k, v in node.items() if k not in ("unit", "value", "values")}
        else:
            rest = node
        for k, v in rest.items():
            if _is_num(v) and k not in COUNT_KEYS:
                problems.append(f"{path}.{k}: a bare number ({v}); figures carry a unit")
            else:
                _units(v, f"{path}.{k}", problems)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            if _is_num(v):
                problems.append(f"{path}[{i}]: a bare number ({v}); figures carry a unit")
            else:
                _units(v, f"{path}[{i}]", problems)


def _check_rows(doc: dict, problems: list[str]) -> None:
    from .harness import TOTALS, stage_names

    rows = doc.get("rows") or []
    if not rows:
        problems.append("rows: empty")
        return
    if rows[0].get("label") != doc.get("reference"):
        problems.append(f"rows[0] is '{rows[0].get('label')}', not the reference '{doc.get('reference')}'")
    for i, row in enumerate(rows):
        where = f"rows[{i}] ({row.get('label')})"
        status = row.get("status", "")
        if status == "ok":
            for k in _ROW_OK:
                if k not in row:
                    problems.append(f"{where}: missing '{k}'")
            for group, names in (("stages", stage_names(doc)), ("totals", TOTALS)):
                for name in names:
                    st = row.get(group, {}).get(name)
                    if st is None:
                        problems.append(f"{where}: {group}.{name} missing")
                        continue
                    for k in _STAT:
                        if k not in st:
                            problems.append(f"{where}: {group}.{name}.{k} missing")
        elif status.startswith(("not available: ", "failed: ")):
            for k in ("stages", "totals", "throughput", "memory", "warmup"):
                if k in row:
                    problems.append(f"{where}: status '{status}' but the row carries '{k}'")
        else:
            problems.append(f"{where}: status must be 'ok', 'not available: ...' or 'failed: ...', got {status!r}")


def validate_report(doc: dict) -> None:
    """Raise :class:`ReportError` listing every way ``doc`` departs from the report's shape."""
    problems: list[str] = []
    kind = doc.get("kind")
    if kind not in _TOP:
        raise ReportError(f"kind must be one of {sorted(_TOP)}, got {kind!r}")
    for k in _TOP[kind]:
        if k not in doc:
            problems.append(f"missing top-level key '{k}'")
    if not str(doc.get("schema", "")).startswith("avs-bench/"):
        problems.append(f"schema: expected 'avs-bench/<version>', got {doc.get('schema')!r}")
    for k in _MACHINE:
        if k not in doc.get("machine", {}):
            problems.append(f"machine: missing '{k}'")
    for k in ("preset", "T"):
        if k not in doc.get("settings", {}):
            problems.append(f"settings: missing '{k}'")
    if kind == "stages":
        _check_rows(doc, problems)
    _units(doc, "$", problems)
    if problems:
        raise ReportError("; ".join(problems))
