"""avs-run's batch loop: any exception in one video is one error line and the others still run; Ctrl-C and
SIGTERM stop the run and remove what was half-written; no "Results saved" for a folder that is gone."""

from __future__ import annotations

import errno
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import avs_engine.cli.run as run_module

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    from tests.media_factory import make_video

    d = tmp_path_factory.mktemp("three")
    make_video(d / "one.mp4", seconds=2.2, fps=10, size=(64, 48))
    shutil.copy(d / "one.mp4", d / "two.mp4")
    shutil.copy(d / "one.mp4", d / "three.mp4")
    return [d / "one.mp4", d / "two.mp4", d / "three.mp4"]


def _failing_on(name, exc, monkeypatch, calls=None):
    from avs_engine.runtime.pipeline import Pipeline

    real = Pipeline.run_video

    def fake(self, video, run_dir, **kw):
        if calls is not None:
            calls.append(kw)
        if Path(video).name == name:
            raise exc
        return real(self, video, run_dir, **kw)

    monkeypatch.setattr(Pipeline, "run_video", fake)


@pytest.mark.parametrize("exc, words", [
    (RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code\nstack trace line"), ["RuntimeError", "ONNXRuntimeError"]),
    (MemoryError(), ["MemoryError"]),
    (OSError(errno.ENOSPC, "No space left on device"), ["No space left on device"]),
])
def test_any_exception_in_one_video_is_one_line(tmp_path, three, monkeypatch, exc, words):
    _failing_on("two.mp4", exc, monkeypatch)
    r = CliRunner().invoke(run_module.main, [*map(str, three), "--project", str(tmp_path), "-q", "--no-overlay"])
    assert r.exit_code == 1, r.output
    errors = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {three[1]}: "), r.stderr
    assert all(w in errors[0] for w in words), errors[0]
    assert "stack trace" not in r.stderr
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["one", "three"]  # nothing half-written for two
    assert "2/3 video(s) done" in r.stdout


def test_save_logits_reaches_run_video(tmp_path, three, monkeypatch):
    calls = []
    _failing_on("none", None, monkeypatch, calls)
    r = CliRunner().invoke(run_module.main, [str(three[0]), "--project", str(tmp_path), "-q", "--no-overlay", "--save-logits"])
    assert r.exit_code == 0, r.output
    assert calls and calls[0]["save_logits"] is True


def test_failed_single_video_says_nothing_saved(tmp_path, three, monkeypatch):
    _failing_on("one.mp4", ValueError("broken"), monkeypatch)
    r = CliRunner().invoke(run_module.main, [str(three[0]), "--project", str(tmp_path), "-q"])
    assert r.exit_code == 1
    assert "Results saved" not in r.stdout and "nothing saved" in r.stdout
    assert not (tmp_path / "run").exists()


def test_ctrl_c_stops_the_batch_and_cleans_up(tmp_path, three, monkeypatch):
    _failing_on("two.mp4", KeyboardInterrupt(), monkeypatch)
    r = CliRunner().invoke(run_module.main, [*map(str, three), "--project", str(tmp_path), "-q", "--no-overlay"])
    assert r.exit_code == 130
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["one"]  # the finished video stays; three never ran
    assert "interrupted" in r.stderr
    _failing_on("one.mp4", KeyboardInterrupt(), monkeypatch)
    r = CliRunner().invoke(run_module.main, [*map(str, three), "--project", str(tmp_path), "-q", "--no-overlay"])
    assert r.exit_code == 130 and not (tmp_path / "run2").exists()  # no empty run folder


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    from tests.media_factory import make_video

    path = tmp_path_factory.mktemp("long") / "long.mp4"
    make_video(path, seconds=30, fps=10, size=(64, 48))
    return path


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_while_writing_removes_the_staging_folder(tmp_path, long_video, sig, code):
    project = tmp_path / "runs"
    # A job started in the background (CI runners, `cmd &`) inherits an ignored SIGINT, and Python then
    # installs no Ctrl-C handler: give the child the default disposition a terminal would.
    p = subprocess.Popen([sys.executable, "-m", "avs_engine.cli.run", str(long_video), "--project", str(project), "-q"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        t0 = time.monotonic()
        while not list(project.glob("run/.long.partial*/masks/*.png")):  # it has started writing
            assert p.poll() is None, p.communicate()
            assert time.monotonic() - t0 < 120, "avs-run did not start writing"
            time.sleep(0.05)
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == code, err
    assert "half-written outputs removed" in err and "Traceback" not in err
    assert not list(project.rglob("*.partial*"))
    assert not (project / "run").exists()  # the only video did not finish: no empty run folder
