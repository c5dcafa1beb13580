"""PNG charts of a report (matplotlib, Agg: no display needed).

Stages report: per-stage median time by backend, horizontal bars on a log
axis (the encoder is orders of magnitude above decoding), a line to the
p90. Streaming report: each video's RSS over the run.
"""

from __future__ import annotations

from pathlib import Path

from .harness import TOTALS, stage_names


def _plt():
    try:
        import matplotlib
    except ModuleNotFoundError:
        from ..errors import BackendError

        raise BackendError("the PNG chart needs matplotlib (pip install 'avs-engine[bench]')") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _stages_chart(doc: dict, path: Path) -> None:
    plt = _plt()
    ok = [r for r in doc["rows"] if r["status"] == "ok"]
    names = list(stage_names(doc)) + list(TOTALS)
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) * max(1, len(ok)) ** 0.5 + 2.2))
    height = 0.8 / max(1, len(ok))
    for j, r in enumerate(ok):
        med, err, ys = [], [], []
        for i, n in enumerate(names):
            st = r["totals" if n in TOTALS else "stages"][n]
            m, p = st["median"]["value"], st["p90"]["value"]
            med.append(max(m, 1e-4))
            err.append(max(p - m, 0.0))
            ys.append(i + (j - (len(ok) - 1) / 2) * height)
        ax.barh(ys, med, height=height, xerr=[[0] * len(err), err], label=r["label"], capsize=2)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("median time per clip, ms (log scale; whisker to p90)")
    s, m = doc["settings"], doc["machine"]
    device = "; ".join(g["name"] for g in m["gpus"]) if s["device"].startswith("cuda") else m["cpu"]
    ax.set_title(f"avs-bench: {s['preset']}, T = {s['T']}, {s['device']} ({device}), {doc['date'][:10]}", fontsize=10)
    missing = [f"{r['label']}: {r['status']}" for r in doc["rows"] if r["status"] != "ok"]
    if missing:
        fig.text(0.01, 0.01, "\n".join(missing)[:400], fontsize=7, va="bottom")
    if ok:  # under the axis: the bars reach the right edge
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.07), ncol=min(len(ok), 4), frameon=False)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout(rect=(0, 0.04 * len(missing), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _streaming_chart(doc: dict, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4))
    for v in doc["videos"]:
        if v["status"] != "ok":
            continue
        tl = v["rss_timeline"]
        ax.plot(tl["t"]["values"], tl["rss"]["values"], label=f"{v['label']} (peak {v['peak_rss']['value']:.0f} MiB)")
    ax.set_xlabel("time since avs-run started, s")
    ax.set_ylabel("RSS, MiB")
    ax.set_ylim(bottom=0)
    s = doc["settings"]
    ax.set_title(f"avs-run memory while streaming: {s['preset']}, T = {s['T']}, {doc['date'][:10]}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_chart(doc: dict, path: str | Path) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    (_stages_chart if doc["kind"] == "stages" else _streaming_chart)(doc, tmp)
    tmp.replace(path)
    return path
