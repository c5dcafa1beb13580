"""Shared fixtures: a tiny random-weight bundle and small generated videos (made once per session), one torch thread."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """An avs-engine bundle of the `tiny` preset with seeded random weights."""
    from avs_engine.reference import build_model, save_bundle

    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_bundle(build_model("tiny", seed=0), path)
    return path


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory):
    """A 6.5 s, 160x96, 25 fps mp4 with a stereo tone track (second l has its own colour and tone)."""
    from tests.media_factory import make_video

    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    make_video(path, seconds=6.5, fps=25, size=(160, 96))
    return path


@pytest.fixture(scope="session")
def silent_video(tmp_path_factory):
    from tests.media_factory import make_silent_video

    path = tmp_path_factory.mktemp("media") / "silent.mp4"
    make_silent_video(path, seconds=3.2, fps=25, size=(160, 96))
    return path


@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test: on a shared 2-core machine one thread is several times faster than two."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
