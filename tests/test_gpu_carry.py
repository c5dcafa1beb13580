"""The GPU check carries itself: wheels prepared here (for this machine's own Python), installed with no
index into a fresh virtual environment that has what a GPU machine has and nothing of ours, and the
check's dry run run from there. Downloads two wheels from PyPI (about 35 MB; pip's cache after that).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from devtools import gpu_carry

REPO = Path(__file__).resolve().parents[1]
# What the test's fresh environment must not find preinstalled: what the wheels bring, and avs-engine.
NOT_PREINSTALLED = ("av", "av.libs", "segment_anything", "avs_engine", "__editable__", "av-", "segment_anything-",
                    "avs_engine-")


def test_size_limit_is_enforced(tmp_path, capsys):
    (tmp_path / "big-1.0-py3-none-any.whl").write_bytes(b"\0" * (2 << 20))
    assert gpu_carry.wheel_bytes(tmp_path) == 2 << 20
    repo = gpu_carry.tracked_bytes()
    assert 1 << 20 < repo < 64 << 20
    assert gpu_carry.check_size(tmp_path, limit_mib=gpu_carry._mib(repo) + 3) == 0
    assert gpu_carry.check_size(tmp_path, limit_mib=gpu_carry._mib(repo) + 1) == 1  # 2 MiB of wheels, 1 to spare
    assert "would not travel" in capsys.readouterr().err


def _gpu_like_env(tmp_path: Path) -> Path:
    """A fresh venv seeing this environment's packages except PyAV, segment-anything and avs-engine
    (as a GPU machine's image: torch, numpy, Pillow, click, ... preinstalled; ours missing)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    here = Path(sysconfig.get_paths()["purelib"])
    visible = tmp_path / "preinstalled"
    visible.mkdir()
    for entry in here.iterdir():
        if entry.name.startswith(NOT_PREINSTALLED) or entry.suffix == ".pth":
            continue
        (visible / entry.name).symlink_to(entry)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "gpu_image.pth").write_text(str(visible) + "\n")
    return py


def test_prepared_wheels_run_the_dry_run_in_a_fresh_environment(tmp_path):
    wheels = tmp_path / "wheels"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert gpu_carry.prepare(wheels, python_version=version) == 0, "pip download failed (network to PyPI?)"
    names = sorted(p.name for p in wheels.glob("*.whl"))
    assert [n.split("-")[0] for n in names] == ["av", "segment_anything"]
    assert gpu_carry._mib(gpu_carry.wheel_bytes(wheels) + gpu_carry.tracked_bytes()) <= gpu_carry.LIMIT_MIB

    py = _gpu_like_env(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    missing = subprocess.run([str(py), "-c", "import av"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert missing.returncode != 0  # the fresh environment really lacks PyAV before the wheels
    out = tmp_path / "out"
    r = subprocess.run([str(py), str(REPO / "devtools" / "gpu_carry.py"), "run", "--wheels", str(wheels), "--out", str(out),
                        "--site", str(tmp_path / "site"), "--budget", "400", "--", "--dry-run", "--quick", "--seed", "7",
                        "--skip", "build", "check", "headline", "stbava", "global_attn", "stage", "paths", "train"],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "installed 2 wheels" in (out / "gpu_check.log").read_text()
    doc = json.loads((out / "gpu_check.json").read_text())
    assert doc["failures"] == [] and {row["section"] for row in doc["rows"]} >= {"e2e"}
    e2e = [row for row in doc["rows"] if row["section"] == "e2e" and "ok" in row]
    assert e2e and all(row["ok"] for row in e2e)  # avs-run on a generated video: PyAV and SAM from the wheels
    assert (out / "gpu_check.md").read_text().startswith("# gpu_check results")
