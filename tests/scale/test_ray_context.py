"""How avs-batch starts Ray on this machine: its workers at the driver's own priority (Ray's default niceness 15
lets any other busy process starve them), and nothing imposed on a cluster it joins."""

from __future__ import annotations

import pytest

from .conftest import RAY_MISSING


def started_with(monkeypatch, **kwargs) -> dict:
    ray = pytest.importorskip("ray", reason=RAY_MISSING)
    from avs_engine.scale.job import ray_context

    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    ray_context(**kwargs)
    return seen


def test_local_ray_runs_its_workers_at_the_drivers_priority(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    seen = started_with(monkeypatch, num_cpus=2)
    assert seen["_system_config"] == {"worker_niceness": 0} and seen["num_cpus"] == 2, seen


@pytest.mark.parametrize("how", ["address", "env"])
def test_a_joined_cluster_keeps_its_own_settings(monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
        seen = started_with(monkeypatch)
    else:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        seen = started_with(monkeypatch, address="auto")
    assert "_system_config" not in seen, seen
