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
def tiny_engine(tmp_path_factory):
    """Folder of the tiny preset's fp32 + fp16 graphs and manifest, exported from ``tiny_bundle``'s weights
    (read-only: copy before damaging)."""
    from tests.export import helpers

    return helpers.tiny_engine(tmp_path_factory.getbasetemp())


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


def pytest_collection_modifyitems(items):
    """tests/scale first (stable order otherwise): its single Ray worker is the longest share of a
    2-worker run, so it starts while the other worker takes the rest."""
    items.sort(key=lambda item: not item.nodeid.startswith("tests/scale/"))


@pytest.hookimpl(tryfirst=True, optionalhook=True)  # optional: a run without pytest-xdist has no such hook
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` (the default options, 2 workers) with one change: every test under tests/scale
    goes to one worker, one file after another, on the one local Ray that folder starts; a test file's
    tests stay on one worker, so its module fixtures are built once."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class FilesAndOneRay(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "tests/scale" if scope.startswith("tests/scale/") else scope

    return FilesAndOneRay(config, log)
