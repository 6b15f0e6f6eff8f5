"""PeakMemory: the process' peak, its DataLoader workers' own memory and the reset between two blocks."""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from kospeech.trainer.peak_memory import PeakMemory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux' /proc")

_MB = 2**20


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


class _HoardingDataset(Dataset):
    """Each item makes its worker keep another 40 MB of its own (written, so not shared with the parent)."""

    def __init__(self) -> None:
        self.kept = []

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> int:
        self.kept.append(torch.ones(40 * _MB // 4))
        return index


def test_the_peak_of_a_block_counts_its_allocation_and_the_next_block_starts_afresh():
    before = _rss_mb()
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"]
    )  # a child the block did not start
    try:
        with PeakMemory("cpu", interval=0.02) as first:
            block = torch.ones(300 * _MB // 4)  # 300 MB, written
            time.sleep(0.1)
            del block
    finally:
        bystander.kill()
        bystander.wait()
    with PeakMemory("cpu") as second:
        small = torch.ones(10 * _MB // 4)
        del small
    one, two = first.figures(), second.figures()
    assert one["peak_rss_since_start"] is False and two["peak_rss_since_start"] is False
    assert one["peak_rss_mb"] >= before + 280
    assert two["peak_rss_mb"] < one["peak_rss_mb"] - 200  # the peak was reset on entering the second block
    assert one["workers_peak_mb"] == 0.0 and one["gpu_peak_mb"] is None


def test_dataloader_workers_are_counted_by_their_own_memory_only():
    loader = DataLoader(_HoardingDataset(), batch_size=1, num_workers=1)
    parent_padding = torch.ones(200 * _MB // 4)  # shared with the forked worker: not the worker's own memory
    with PeakMemory("cpu", interval=0.02) as memory:
        batches = iter(loader)
        assert [int(next(batches)) for _ in range(4)] == [0, 1, 2, 3]
        time.sleep(0.3)  # the worker, holding all 4 items, lives on until the iterator ends: a few samples see it
    del batches
    figures = memory.figures()
    assert 150 <= figures["workers_peak_mb"] < 190 + 100  # 4 x 40 MB kept by the worker, plus its own interpreter
    assert figures["peak_rss_mb"] >= 200  # the parent's own tensor
    del parent_padding


def test_figures_are_only_known_after_the_block():
    memory = PeakMemory("cpu")
    with pytest.raises(RuntimeError, match="after the with-block"):
        memory.figures()
    with pytest.raises(ValueError, match="interval"):
        PeakMemory("cpu", interval=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_the_gpu_peak_is_the_block_own():
    with PeakMemory("cuda") as first:
        block = torch.ones(100 * _MB // 4, device="cuda")
        del block
    with PeakMemory("cuda") as second:
        pass
    assert first.figures()["gpu_peak_mb"] >= 100
    assert second.figures()["gpu_peak_mb"] < 1
