"""Shared test setup: one torch thread per process (the CI machine has two cores), seeded RNGs, root logging as the
test found it, and the order in which files reach the two workers."""

import logging
import random
from collections import defaultdict

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


def pytest_collection_modifyitems(items):
    """Files with slow tests first, then the rest, each group by falling number of tests (a file's tests keep their
    order). ``make test`` hands whole files to two workers in this order (``--dist loadfile --no-loadscope-reorder``):
    by number of tests alone, as xdist orders them by default, the one-test files that take minutes (the notebook,
    the scale-out run) started last and ran alone for the suite's last minutes."""
    by_file = defaultdict(list)
    for item in items:
        by_file[item.path].append(item)
    slow = {path for path, file_items in by_file.items() if any(item.get_closest_marker("slow") for item in file_items)}
    order = sorted(by_file, key=lambda path: (path not in slow, -len(by_file[path])))
    items[:] = [item for path in order for item in by_file[path]]


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
