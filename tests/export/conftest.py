import pytest

from tests.export import helpers


@pytest.fixture(scope="session")
def tiny_model():
    """The float32 reference the graphs were exported from."""
    return helpers.tiny_model()
