"""avs-train and avs-eval through click, on a handful of generated clips with the tiny preset."""

from __future__ import annotations

import json

from click.testing import CliRunner

from avs_engine.cli.eval import main as eval_main
from avs_engine.cli.train import main as train_main


def test_train_then_eval(tmp_path):
    preset = tmp_path / "p.json"
    preset.write_text(json.dumps({"model": "tiny", "train": {"lr": 1e-3, "freeze": [], "batch_clips": 1, "epochs": 1,
                                                              "steps_per_epoch": 2, "generated_train": 2, "generated_val": 1}}))
    cache = tmp_path / "cache"
    r = CliRunner().invoke(train_main, ["--preset-file", str(preset), "--generated", "--cache-dir", str(cache),
                                        "--project", str(tmp_path / "runs"), "-q"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "Results saved to" in r.output
    bundle = tmp_path / "runs" / "train" / "best.safetensors"
    assert bundle.is_file()
    out = tmp_path / "m.json"
    r = CliRunner().invoke(eval_main, ["--weights", str(bundle), "--generated", "2", "--cache-dir", str(cache),
                                       "--json-out", str(out), "-q"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "mIoU" in r.output and "all seconds" in r.output
    doc = json.loads(out.read_text())
    assert doc["metrics"]["all"]["videos"] == 2 and doc["metrics"]["all"]["frames"] == 10
    assert 0 <= doc["metrics"]["all"]["miou"] <= 1 and len(doc["per_video"]) == 2


def test_eval_errors_are_one_line(tmp_path):
    r = CliRunner().invoke(eval_main, ["--weights", str(tmp_path / "none.safetensors"), "--generated", "1"])
    assert r.exit_code == 2 and r.output.startswith("error: ") and "not found" in r.output
    r = CliRunner().invoke(train_main, ["--config", "tiny", "--data", str(tmp_path), "--project", str(tmp_path / "r")])
    assert r.exit_code == 2 and "metadata CSV not found" in r.output


def test_eval_on_an_avsbench_folder(tmp_path, tiny_bundle):
    from avs_engine.data.avsbench import write_split
    from avs_engine.data.generator import generate_clip, split_seeds

    write_split(tmp_path / "ms3", "ms3", "test", [generate_clip(s) for s in split_seeds("test", 2)])
    out = tmp_path / "m.json"
    r = CliRunner().invoke(eval_main, ["--weights", str(tiny_bundle), "--data", str(tmp_path / "ms3"), "--subset", "ms3",
                                       "--split", "test", "--json-out", str(out), "-q"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert doc["metrics"]["all"]["frames"] == 10 and "AVSBench ms3 test" in doc["data"]
    # generated.json next to the data carries the burst seconds: they are scored apart
    assert doc["metrics"]["burst"]["videos"] == sum(1 for v in doc["per_video"] if "burst_miou" in v)
