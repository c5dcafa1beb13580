"""The avs-bench harness on `tiny` with 2 runs: a valid report, ratios against the reference, missing backends named."""

from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner

from avs_engine.bench.harness import REFERENCE, STAGES, TOTALS, BenchSettings, RowSpec, run_benchmark
from avs_engine.bench.report import to_markdown, write_reports
from avs_engine.bench.schema import ReportError, validate_report
from avs_engine.errors import ConfigError


@pytest.fixture(scope="module")
def report():
    """One small run: the reference, a second torch row, and two backends that cannot run here
    (onnxruntime: no graphs, and exporting them is switched off; tensorrt: not installed)."""
    settings = BenchSettings(
        preset="tiny", T=2, backends=("torch:bfloat16", "onnxruntime", "tensorrt"), runs=2, warmup=1,
        video_size=(160, 96), peak_budget_s=0.5, export_missing=False, command="avs-bench --test",
    )
    return run_benchmark(settings)


def test_report_is_valid(report):
    validate_report(report)
    assert report["settings"]["preset"] == "tiny" and report["settings"]["T"] == 2
    assert report["machine"]["cpu"] and report["versions"]["torch"] != "not installed"
    assert [r["label"] for r in report["rows"]] == [REFERENCE, "torch:bfloat16", "onnxruntime:float32", "tensorrt:float16"]
    ref = report["rows"][0]
    assert ref["status"] == "ok"
    for name in STAGES:
        st = ref["stages"][name]
        assert st["median"]["unit"] == "ms" and len(st["runs"]["values"]) == 2
        assert st["p90"]["value"] >= st["median"]["value"]
    # warm-up apart from the measured runs
    assert ref["warmup"]["runs"] == 1 and len(ref["warmup"]["clip"]["values"]) == 1
    # efficiency against the peak measured in the same run
    assert report["matmul_peak"]["float32"]["unit"] == "TFLOP/s"
    enc = ref["stages"]["image_encoder"]
    assert enc["achieved"]["unit"] == "TFLOP/s" and enc["efficiency"]["value"] > 0
    assert ref["memory"]["peak_rss"]["value"] >= ref["memory"]["rss_after_load"]["value"] > 0
    # every row measured in its own process: no row carries an earlier row's high-water mark
    assert report["settings"]["row_process"] == "a fresh process per row"
    assert any("fresh process" in n for n in report["notes"])


def test_ratios_are_against_the_reference_row(report):
    ref, other = report["rows"][0], report["rows"][1]
    assert other["status"] == "ok", other["status"]
    for group, names in (("stages", STAGES), ("totals", TOTALS)):
        for name in names:
            assert ref[group][name]["ratio_to_reference"]["value"] == pytest.approx(1.0)
            want = other[group][name]["median"]["value"] / ref[group][name]["median"]["value"]
            assert other[group][name]["ratio_to_reference"]["value"] == pytest.approx(want, rel=1e-3, abs=1e-4)
    clip = ref["totals"]["clip"]["runs"]["values"]
    parts = [sum(ref["stages"][s]["runs"]["values"][i] for s in STAGES) for i in range(2)]
    # the report rounds each value to 1e-4 ms: the sum of ~10 rounded stages may be off by 5e-4
    assert clip == pytest.approx(parts, rel=0, abs=len(STAGES) * 0.5e-4 + 1e-9)


def test_unavailable_backends_are_named_not_zeroed(report):
    for row in report["rows"][2:]:
        assert row["status"].startswith("not available: "), row
        assert not {"stages", "totals", "throughput", "memory"} & set(row)
    md = to_markdown(report)
    assert "`onnxruntime:float32`: not available:" in md and "`tensorrt:float16`: not available:" in md


def test_schema_rejects_bad_reports(report):
    bare = copy.deepcopy(report)
    bare["rows"][0]["stages"]["audio"]["median"] = 1.5
    with pytest.raises(ReportError, match="bare number"):
        validate_report(bare)
    zeros = copy.deepcopy(report)
    zeros["rows"][2]["stages"] = copy.deepcopy(report["rows"][0]["stages"])
    with pytest.raises(ReportError, match="carries 'stages'"):
        validate_report(zeros)
    order = copy.deepcopy(report)
    order["rows"] = order["rows"][1:]
    with pytest.raises(ReportError, match="not the reference"):
        validate_report(order)


def test_writes_json_markdown_png(tmp_path, report):
    paths = write_reports(report, tmp_path / "sub" / "cpu_tiny")
    assert json.loads(paths["json"].read_text()) == json.loads(json.dumps(report))
    md = paths["markdown"].read_text()
    assert "Command: `avs-bench --test`" in md and "| **clip** |" in md and report["machine"]["cpu"] in md
    assert paths["chart"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_settings_put_the_reference_first():
    s = BenchSettings(backends=("onnxruntime", "torch:bfloat16", "torch:float32", "torch:bfloat16"))
    assert [r.label for r in s.rows] == [REFERENCE, "onnxruntime:float32", "torch:bfloat16"]
    assert RowSpec.parse("tensorrt").precision == "float16"
    assert RowSpec.parse("torch:bfloat16+fused") == RowSpec("torch", "bfloat16", fused=True)
    assert RowSpec("torch", "float32", fused=True).label == "torch:float32+fused"
    with pytest.raises(ConfigError, match="torch backend only"):
        RowSpec.parse("onnxruntime+fused")
    with pytest.raises(ConfigError, match="precision"):
        RowSpec.parse("torch:int8")
    with pytest.raises(ConfigError, match="backend"):
        RowSpec.parse("tvm")


def test_cli_is_a_thin_shell(tmp_path, report, monkeypatch):
    """avs-bench parses, calls run_benchmark, writes the three files, prints a summary."""
    import avs_engine.bench.harness as harness
    from avs_engine.cli.bench import main

    seen = {}

    def fake_run(settings, progress=None):
        seen["settings"] = settings
        return dict(report, command=settings.command)

    monkeypatch.setattr(harness, "run_benchmark", fake_run)
    out = tmp_path / "r"
    r = CliRunner().invoke(main, ["--preset", "tiny", "-T", "2", "--backends", "torch:bfloat16,onnxruntime",
                                  "--runs", "2", "--warmup", "1", "--out", str(out), "-q"])
    assert r.exit_code == 0, r.output
    s = seen["settings"]
    assert (s.preset, s.T, s.runs, s.warmup) == ("tiny", 2, 2, 1)
    assert [x.label for x in s.rows] == [REFERENCE, "torch:bfloat16", "onnxruntime:float32"]
    assert s.command.startswith("avs-bench --config tiny --clip-seconds 2 --backends torch:bfloat16,onnxruntime --runs 2")
    assert "onnxruntime:float32: not available" in r.output and "Reports written to" in r.output
    assert (tmp_path / "r.json").exists() and (tmp_path / "r.md").exists() and (tmp_path / "r.png").exists()
    bad = CliRunner().invoke(main, ["--backends", "torch:int8", "--out", str(out)])
    assert bad.exit_code == 2 and "error: precision 'int8'" in bad.output


def test_cli_fails_when_the_reference_cannot_run(tmp_path):
    """No silent success: the report is written, every row says why, and the exit code is 1."""
    from avs_engine.cli.bench import main

    r = CliRunner().invoke(main, ["--device", "cuda:99", "--backends", "tensorrt", "--no-export", "--runs", "1",
                                  "--out", str(tmp_path / "r"), "-q"])
    assert r.exit_code == 1, r.output
    doc = json.loads((tmp_path / "r.json").read_text())
    validate_report(doc)
    assert all(row["status"].startswith(("not available: ", "failed: ")) for row in doc["rows"])
    assert "could not be measured" in r.output
