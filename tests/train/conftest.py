"""Training tests run torch on one thread and share a two-clip generated split per module."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def tiny_split():
    """Two generated training clips at 128x128."""
    from avs_engine.data.prepared import generated_samples, prepare

    return prepare(generated_samples("train", 2), 2, 128)
