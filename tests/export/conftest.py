import pytest

from tests.export import helpers


@pytest.fixture(scope="session")
def tiny_engine(tmp_path_factory):
    """Folder of the tiny preset's fp32 + fp16 graphs and manifest (read-only: copy before damaging)."""
    return helpers.tiny_engine(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def tiny_model():
    """The float32 reference the graphs were exported from."""
    return helpers.tiny_model()
