"""Shared test setup: one torch thread per process (the CI machine has two cores), seeded RNGs, root logging as the
test found it."""

import logging
import random

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _undo_console_logging_setup():
    """A console script run in-process (``setup_logging``: ``basicConfig(force=True)``) replaces the root handlers
    with its own, on the test's captured stream, and sets DEBUG: later tests on the same worker then logged through a
    closed stream ("Logging error" in their output) and at DEBUG. pytest's own capture handlers stay."""
    level = logging.root.level
    yield
    for handler in list(logging.root.handlers):
        if not type(handler).__module__.startswith("_pytest"):
            logging.root.removeHandler(handler)
            handler.close()
    logging.root.setLevel(level)
