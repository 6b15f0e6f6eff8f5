"""Fixtures of the inference tests (builders in inference_world.py)."""

import pytest
from inference_world import Setup, write_world


@pytest.fixture
def world(tmp_path) -> Setup:
    """Base checkpoint + head adapters for alice and bob + four WAV files (0.4 to 1.15 s)."""
    return write_world(tmp_path, "head")


@pytest.fixture
def make_world(tmp_path):
    """Factory: the same world with another adapter type."""
    return lambda adapter_type: write_world(tmp_path / adapter_type, adapter_type)
