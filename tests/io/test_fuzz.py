"""The media layer's fuzz target: every input it ever found (tests/io/fuzz_findings/) now gets a right answer,
and a one-minute coverage-guided run (Atheris, in a child process with time and memory limits) over the
generated seed corpus finds nothing new (slow)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from avs_engine.io.fuzz import check_media
from tests.fuzz_seeds import FINDINGS, write_seeds

ROOT = Path(__file__).resolve().parents[2]
FOUND = sorted(FINDINGS.glob("*.bin"))


def _limits(memory_mb: int, cpu_s: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    return apply


def test_the_findings_are_kept():
    assert len(FOUND) >= 4, FOUND


@pytest.mark.parametrize("finding", FOUND, ids=[p.stem for p in FOUND])
def test_each_finding_gets_a_right_answer_within_limits(finding, tmp_path):
    """In a child process (a crash must fail the test, not pytest) with 2 GB of address space and 60 s of CPU."""
    code = ("import sys, av; av.logging.set_level(None); from avs_engine.io.fuzz import check_media; "
            "print('clips', check_media(sys.argv[1]))")
    copy = tmp_path / finding.name
    copy.write_bytes(finding.read_bytes())
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    res = subprocess.run([sys.executable, "-c", code, str(copy)], capture_output=True, text=True, timeout=120,
                         env=env, preexec_fn=_limits(2048, 60))
    assert res.returncode == 0 and "clips" in res.stdout, res.stderr[-2000:]


def test_seed_corpus_passes_the_target(tmp_path):
    seeds = [p for p in write_seeds(tmp_path / "seeds") if not p.name.startswith("finding-")]
    assert len(seeds) >= 12
    made = {p.name: check_media(str(p)) for p in seeds}
    assert made["seed.mp4"] >= 1 and made["size_change.ts"] >= 1 and made["edit_list.mp4"] >= 1, made


@pytest.mark.slow
def test_one_minute_of_fuzzing_finds_nothing(tmp_path):
    """``python -m avs_engine.io.fuzz`` for 60 s: exit code 0 and no crash, timeout or out-of-memory artifact."""
    pytest.importorskip("atheris", reason="pip install atheris (Python <= 3.12): the fuzzing engine")
    seeds = tmp_path / "seeds"
    write_seeds(seeds)
    corpus, findings = tmp_path / "corpus", tmp_path / "findings"
    corpus.mkdir()
    findings.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "avs_engine.io.fuzz", str(corpus), str(seeds), "-max_total_time=60", "-timeout=20",
           "-rss_limit_mb=2048", "-max_len=65536", f"-artifact_prefix={findings}/", "-print_final_stats=1"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env=env, cwd=tmp_path,
                         preexec_fn=_limits(8192, 600))
    log = res.stderr + res.stdout
    tail = "\n".join(line for line in log.splitlines() if not line.startswith("#"))[-4000:]
    assert res.returncode == 0, f"fuzzer exit code {res.returncode}:\n{tail}"
    assert not list(findings.iterdir()), f"findings {list(findings.iterdir())}:\n{tail}"
    runs = [int(line.rsplit(":", 1)[1]) for line in log.splitlines() if line.startswith("stat::number_of_executed_units")]
    assert runs and runs[0] > 300, tail
