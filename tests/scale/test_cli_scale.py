"""avs-batch and avs-serve as commands: help, version, and refusals that need no Ray (one error line, exit 2)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from avs_engine import __version__
from avs_engine.cli.batch import main as batch
from avs_engine.cli.serve import main as serve

from .conftest import RAY_MISSING


@pytest.mark.parametrize("cmd", [batch, serve])
def test_help_and_version(cmd):
    r = CliRunner().invoke(cmd, ["--help"])
    assert r.exit_code == 0 and "docs/scale.md" in r.output
    r = CliRunner().invoke(cmd, ["--version"])
    assert r.exit_code == 0 and r.output.strip().endswith(__version__)


def test_batch_refusals_are_one_line(tmp_path):
    pytest.importorskip("ray", reason=RAY_MISSING)
    r = CliRunner().invoke(batch, [str(tmp_path), "--out", str(tmp_path / "o"), "--backend", "tensorrt"])
    assert r.exit_code == 2 and r.output.count("error:") == 1 and "--engine-dir" in r.output, r.output
    r = CliRunner().invoke(batch, [str(tmp_path / "none.mp4"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "file not found" in r.output and "no video to run" in r.output, r.output
    r = CliRunner().invoke(batch, ["x.mp4"])
    assert r.exit_code == 2 and "--out" in r.output


def test_serve_refuses_options_that_do_not_apply():
    pytest.importorskip("ray", reason=RAY_MISSING)
    r = CliRunner().invoke(serve, ["--precision", "bf16"])
    assert r.exit_code == 2 and r.output.count("error:") == 1 and "bf16" in r.output, r.output


@pytest.mark.parametrize("value", ["-1", "x", "1.5", ""])
def test_batch_actor_retries_refuses_what_is_not_a_count(tmp_path, value):
    r = CliRunner().invoke(batch, [str(tmp_path / "a.mp4"), "--out", str(tmp_path / "o"), "--actor-retries", value])
    assert r.exit_code == 2 and r.output.count("Error:") == 1, r.output
    assert f"Invalid value for '--actor-retries': expected a whole number of retries, 0 or more; got {value!r}" in r.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, want", [([], 2), (["--actor-retries", "0"], 0), (["--actor-retries", "5"], 5)])
def test_batch_actor_retries_reaches_the_job(tmp_path, monkeypatch, args, want):
    pytest.importorskip("ray", reason=RAY_MISSING)
    import avs_engine.scale.job as job

    seen = []

    def fake_run_batch(sources, cfg, **kwargs):
        seen.append(cfg.actor_retries)
        raise KeyboardInterrupt   # stop here: the job itself is tested elsewhere

    monkeypatch.setattr(job, "run_batch", fake_run_batch)
    video = tmp_path / "a.mp4"
    video.write_bytes(b"\0" * 64)
    r = CliRunner().invoke(batch, [str(video), "--out", str(tmp_path / "o"), "-q", *args])
    assert r.exit_code == 130 and seen == [want], (r.output, seen)
