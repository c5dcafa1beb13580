"""A CUDA device this machine does not have is one line, in avs-train and in the torch backend
(torch.cuda stubbed: the check must not need a GPU)."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from avs_engine.backends.torch_backend import TorchRunner
from avs_engine.cli.train import main as train_main
from avs_engine.errors import BackendError, ConfigError
from avs_engine.train.loop import resolve_device


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_trainer_accepts_what_exists(two_gpus):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda")


def test_trainer_refuses_an_ordinal_beyond_the_count(two_gpus):
    with pytest.raises(ConfigError, match=r"device 'cuda:2' requested but this machine has 2 CUDA device\(s\) \(cuda:0, cuda:1\)"):
        resolve_device("cuda:2")


def test_trainer_refuses_cuda_without_cuda(no_cuda):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")


def test_avs_train_says_it_in_one_line_before_any_data(tmp_path, two_gpus):
    r = CliRunner().invoke(train_main, ["--config", "tiny", "--generated", "--cache-dir", str(tmp_path / "cache"),
                                        "--project", str(tmp_path / "runs"), "--device", "cuda:7", "-q"])
    assert r.exit_code == 2
    assert r.output.startswith("error: ") and r.output.strip().count("\n") == 0
    assert "device 'cuda:7' requested but this machine has 2 CUDA device(s) (cuda:0, cuda:1)" in r.output
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()


def test_avs_train_without_cuda(tmp_path, no_cuda):
    r = CliRunner().invoke(train_main, ["--config", "tiny", "--generated", "--cache-dir", str(tmp_path / "cache"),
                                        "--project", str(tmp_path / "runs"), "--device", "cuda", "-q"])
    assert r.exit_code == 2 and r.output.strip().count("\n") == 0 and "CUDA is not available" in r.output


def test_torch_backend_says_it_in_one_line(two_gpus):
    with pytest.raises(BackendError) as e:
        TorchRunner(seed=0, device="cuda:3").activate()
    assert "\n" not in str(e.value) and "device 'cuda:3' requested but this machine has 2 CUDA device(s)" in str(e.value)


def test_torch_backend_without_cuda(no_cuda):
    with pytest.raises(BackendError, match="CUDA is not available"):
        TorchRunner(seed=0, device="cuda:0").activate()
