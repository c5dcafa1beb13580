"""Report writers: JSON (every figure with its unit), Markdown tables, and the PNG chart.

``write_reports(doc, "benchmarks/cpu_tiny")`` writes ``cpu_tiny.json``,
``cpu_tiny.md`` and ``cpu_tiny.png`` after checking the document's shape.
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import write_json_atomic
from .harness import MODEL_STAGES, TOTALS, stage_names
from .schema import validate_report


def _v(f, digits: int = 1, suffix: str = "") -> str:
    """A figure (or a reason string) as table text."""
    if isinstance(f, dict) and f.get("value") is not None:
        return f"{f['value']:,.{digits}f}{suffix}"
    if isinstance(f, str):
        return f.split(":")[0]
    return "–"


def _ms(f) -> str:
    v = f["value"]
    return f"{v:,.1f}" if v >= 10 else f"{v:,.2f}" if v >= 0.1 else f"{v:,.3f}"


def _header(doc: dict, title: str) -> list[str]:
    m, v, s = doc["machine"], doc["versions"], doc["settings"]
    gpus = "; ".join(f"{g['name']} ({g['memory']['value']} GiB), driver {g['driver']}" for g in m["gpus"]) or "none"
    mem = m["memory"]["value"] if isinstance(m["memory"], dict) else m["memory"]
    load_end = m.get("load_average_1min_at_end", {}).get("value", "?")
    libs = ", ".join(
        f"{k} {val}" for k, val in v.items()
        if val != "not installed" and k not in ("torch.threads", "torch.cuda")
    )
    threads = v.get("torch.threads")
    lines = [
        f"# {title}",
        "",
        f"Command: `{doc.get('command') or '(library call)'}`",
        "",
        "| | |",
        "|---|---|",
        f"| date | {doc['date']} (finished {doc.get('finished', '?')}) |",
        f"| machine | {m['cpu']}, {m['cores']} cores ({m['cores_usable']} usable), {mem} GiB RAM, {m['os']} |",
        f"| load average (1 min) | {m['load_average_1min']['value']} at start, {load_end} at end |",
        f"| GPU | {gpus} |",
        f"| versions | {libs}" + (f"; torch threads {threads}" if threads else "") + " |",
    ]
    return lines


def _stages_markdown(doc: dict) -> str:
    s = doc["settings"]
    rows = doc["rows"]
    ok = [r for r in rows if r["status"] == "ok"]
    ref = doc["reference"]
    title = f"avs-bench: preset `{s['preset']}`, T = {s['T']}, {s['device']}"
    lines = _header(doc, title)
    vid = s["video"]
    peaks = "; ".join(
        f"{p} {_v(f, 4)} TFLOP/s ({f['note']})" if isinstance(f, dict) else f"{p} {f}"
        for p, f in doc["matmul_peak"].items()
    ) or "not measured"
    lines += [
        f"| model | preset `{s['preset']}` ({s['image_size']['value']:.0f} px input), {s['weights']}, resize `{s['resize']}` |",
        f"| clip | T = {s['T']} s of a {vid['width']}x{vid['height']} {vid['fps']['value']:.0f} fps {vid['codec']}; "
        f"{s['warmup']} warm-up + {s['runs']} measured runs per row |",
        f"| precisions | {', '.join(s['precisions'])}; CPU threads: {s.get('cpu_threads', '?')} |",
        f"| measured matmul peak | {peaks} |",
    ]
    for r in rows:
        if "engine" in r:
            e = r["engine"]
            lines.append(f"| `{r['label']}` graphs | {e['dir']} ({e['weights']}; {e['opset']}; created {e['created']}) |")
    lines += [""]
    head = "| stage | GFLOP | " + " | ".join(r["label"] for r in rows) + " |"
    sep = "|---|---:|" + "---:|" * len(rows)

    def table(stat: str, with_ratio: bool) -> list[str]:
        out = [head, sep]
        for group, names in (("stages", stage_names(doc)), ("totals", TOTALS)):
            for name in names:
                gf = doc["flops"].get(name)
                if name == "model":
                    gf = {"value": sum(f["value"] for f in doc["flops"].values())}
                label = f"**{name}**" if group == "totals" else name
                cells = []
                for r in rows:
                    if r["status"] != "ok":
                        cells.append("n/a")
                        continue
                    st = r[group][name]
                    cell = _ms(st[stat])
                    if with_ratio and r["label"] != ref and isinstance(st.get("ratio_to_reference"), dict):
                        cell += f" ({st['ratio_to_reference']['value']:.2f}x)"
                    cells.append(cell)
                gft = f"{gf['value']:,.3f}" if gf else ""
                out.append(f"| {label} | {gft} | " + " | ".join(cells) + " |")
        return out

    lines += [f"## Latency per clip: median, ms (time / `{ref}` time)", ""] + table("median", True)
    lines += ["", "## Latency per clip: p90, ms", ""] + table("p90", False)

    if ok:
        lines += ["", "## Efficiency: achieved TFLOP/s (% of the measured matmul peak of the row's precision; "
                  "floor = the stage's FLOPs at that peak)", "",
                  "| stage | " + " | ".join(r["label"] for r in ok) + " |", "|---|" + "---:|" * len(ok)]
        for group, names in (("stages", MODEL_STAGES), ("totals", ("model",))):
            for name in names:
                cells = []
                for r in ok:
                    st = r[group][name]
                    a = st.get("achieved")
                    e = st.get("efficiency")
                    fl = st.get("floor")
                    note = " (reference-equivalent)" if a and "reference-equivalent" in a["unit"] else ""
                    cells.append(f"{a['value']:.4g}" + (f" ({e['value']:.1f}%; floor {_ms(fl)} ms)" if e else note) if a else "–")
                lines.append(f"| {name} | " + " | ".join(cells) + " |")

        lines += ["", "## Throughput and memory", "",
                  "| backend | clip median ms | throughput (s of video per s) | RSS after load MiB | peak RSS MiB | GPU peak MiB |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in ok:
            mem = r["memory"]
            lines.append(
                f"| {r['label']} | {_ms(r['totals']['clip']['median'])} | {_v(r['throughput'], 2)} | "
                f"{_v(mem['rss_after_load'])} | {_v(mem['peak_rss'])} | {_v(mem.get('gpu_peak'))} |"
            )
        lines += ["", "Peak RSS during each stage, MiB:", "",
                  "| stage | " + " | ".join(r["label"] for r in ok) + " |", "|---|" + "---:|" * len(ok)]
        for name in stage_names(doc):
            cells = []
            for r in ok:
                st = r["stages"][name]
                cell = _v(st["peak_rss"])
                if "gpu_peak" in st:
                    cell += f" (GPU {_v(st['gpu_peak'])})"
                cells.append(cell)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")

        lines += ["", "## Warm-up (not included above)", "",
                  "| backend | warm-up runs | clip ms, each warm-up run | first run: image_encoder ms |",
                  "|---|---:|---|---:|"]
        for r in ok:
            w = r["warmup"]
            each = ", ".join(f"{x:,.1f}" for x in w["clip"]["values"]) or "–"
            first = _ms(w["first_run"]["image_encoder"]) if w["first_run"] else "–"
            lines.append(f"| {r['label']} | {w['runs']} | {each} | {first} |")

    missing = [r for r in rows if r["status"] != "ok"]
    if missing:
        lines += ["", "## Not measured", ""] + [f"- `{r['label']}`: {r['status']}" for r in missing]
    lines += ["", "## Notes", ""] + [f"- {n}" for n in doc["notes"]]
    return "\n".join(lines) + "\n"


def _streaming_markdown(doc: dict) -> str:
    s = doc["settings"]
    title = f"avs-bench --streaming: preset `{s['preset']}`, T = {s['T']}, {s['device']} {s['precision']}"
    lines = _header(doc, title)
    lines += [
        f"| model | preset `{s['preset']}`, {s['weights']}; avs-run {' '.join(s['avs_run_args'])} |",
        f"| videos | generated {s['video_size']} {s['fps']['value']:.0f} fps H.264 + AAC |",
        "",
        "## avs-run on one video per process",
        "",
        "| video | frames | avs-run time s | real-time factor (video s / s) | process wall s | "
        "process real-time factor | peak RSS MiB | RSS at 25% / 50% / 75% / 100% of the run, MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for v in doc["videos"]:
        if v["status"] != "ok":
            lines.append(f"| {v['label']} | | | {v['status']} | | | | |")
            continue
        q = " / ".join(f"{x:,.0f}" for x in v["rss_quartiles"]["values"])
        lines.append(
            f"| {v['label']} | {v['n_frames']} | {_v(v['avs_run_time'], 1)} | {_v(v['realtime_factor'], 2)} | "
            f"{_v(v['process_wall'], 1)} | {_v(v['process_realtime_factor'], 2)} | {_v(v['peak_rss'])} | {q} |"
        )
    lines += ["", "Per-stage time per second of video (from avs-run's result.json), ms:", ""]
    ok = [v for v in doc["videos"] if v["status"] == "ok"]
    if ok:
        names = list(ok[0]["stages_per_video_second"])
        lines += ["| stage | " + " | ".join(v["label"] for v in ok) + " |", "|---|" + "---:|" * len(ok)]
        for n in names:
            lines.append(f"| {n} | " + " | ".join(_v(v["stages_per_video_second"].get(n), 2) for v in ok) + " |")
    mf = doc["memory_flat"]
    lines += ["", "## Memory over time", "", f"{mf['statement']}", ""]
    lines += ["## Notes", ""] + [f"- {n}" for n in doc["notes"]]
    return "\n".join(lines) + "\n"


def to_markdown(doc: dict) -> str:
    return _stages_markdown(doc) if doc["kind"] == "stages" else _streaming_markdown(doc)


def write_reports(doc: dict, prefix: str | Path) -> dict[str, Path]:
    """Validate ``doc``, then write ``<prefix>.json``, ``.md`` and ``.png``; returns the paths."""
    from .chart import write_chart

    validate_report(doc)
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    paths = {k: Path(f"{prefix}.{ext}") for k, ext in (("json", "json"), ("markdown", "md"), ("chart", "png"))}
    write_json_atomic(paths["json"], doc)
    tmp = paths["markdown"].with_name(f".{paths['markdown'].name}.tmp")
    tmp.write_text(to_markdown(doc), encoding="utf-8")
    tmp.replace(paths["markdown"])
    write_chart(doc, paths["chart"])
    return paths
