"""Grouped adapter computation in mixed-user batches: many users' adapters computed together == each row alone."""

import math
from typing import List

import pytest
import torch

from kospeech.models import AdapterRouter, DeepSpeech2, RowBlock, build_adapter
from kospeech.models.adapter import registered_adapter

ADAPTER_TYPES = ["head", "residual_head", "encoder"]
NUM_USERS = 16


def make_adapter(model: DeepSpeech2, adapter_type: str, seed: int, size: int = 4, extractor: bool = True):
    """A fitting adapter with non-trivial random weights, in eval mode (``size``: bottleneck / hidden width)."""
    torch.manual_seed(seed)
    dims = model.trunk_dims
    if adapter_type == "encoder":
        hidden = [size, 3] if extractor else [size]
        extractor_dim = dims.extractor_output_dim if extractor else None
        adapter = build_adapter(
            "encoder", dims.rnn_output_dim, hidden, dims.rnn_output_dim, 0.1, dims.num_rnn_layers, extractor_dim
        )
    else:
        adapter = build_adapter(adapter_type, dims.rnn_output_dim, [size, 6], dims.num_classes, 0.1)
    with torch.no_grad():
        for parameter in adapter.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.4)
    return adapter.eval()


def alone_with(model: DeepSpeech2, adapter, inputs: torch.Tensor, lengths: torch.Tensor, row: int) -> torch.Tensor:
    """Row ``row`` run alone (unpadded) through ``model`` with ``adapter`` attached: the oracle."""
    length = int(lengths[row])
    model.attach_adapter(adapter, replace=True)
    try:
        _, _, adapted = model(inputs[row : row + 1, :length], lengths[row : row + 1])
    finally:
        model.remove_adapter()
    return adapted[0]


@pytest.fixture
def many_rows():
    """20 rows of different lengths with garbage in the padding: users 0..15, users 0 and 5 again, two base rows."""
    generator = torch.Generator().manual_seed(3)
    lengths = torch.randint(4, 27, (20,), generator=generator)
    lengths[7] = 27
    inputs = torch.randn(20, 27, 16, generator=generator)
    for row, length in enumerate(lengths.tolist()):
        inputs[row, length:] = torch.randn(27 - length, 16, generator=generator) * 50.0
    names = [f"user{index:02d}" for index in range(NUM_USERS)] + ["user00", "user05", None, None]
    return inputs, lengths, names


def check_rows(model: DeepSpeech2, adapters: dict, inputs, lengths, names: List) -> None:
    """forward_mixed of the whole batch == every row alone with its user's adapter (1e-5), base rows bitwise."""
    with torch.inference_mode():
        mixed, _ = model.forward_mixed(inputs, lengths, AdapterRouter.from_names(names, adapters))
        base, _ = model(inputs, lengths)
        for row, name in enumerate(names):
            if name is None:
                assert torch.equal(mixed[row], base[row])
                continue
            frames = math.ceil(int(lengths[row]) / 2)
            oracle = alone_with(model, adapters[name], inputs, lengths, row)
            assert (mixed[row, :frames] - oracle).abs().max() <= 1e-5, (row, name)
            assert (mixed[row, :frames] - base[row, :frames]).abs().max() > 1e-2  # the adapter matters


@pytest.mark.parametrize("adapter_type", ADAPTER_TYPES)
def test_sixteen_users_grouped_equal_each_row_alone(make_model, many_rows, adapter_type):
    model = make_model(seed=4)
    inputs, lengths, names = many_rows
    adapters = {f"user{index:02d}": make_adapter(model, adapter_type, seed=100 + index) for index in range(NUM_USERS)}
    router = AdapterRouter.from_names(names, adapters)
    planned = router.planned_routes
    assert registered_adapter(adapter_type).grouped is not None
    assert len(planned) == 1 and planned[0].grouped is not None  # all 16 users in one grouped route
    assert sorted(planned[0].rows.tolist()) == list(range(18))
    check_rows(model, adapters, inputs, lengths, names)
    # every row routed, in another order: the group serves the whole batch without gathering rows
    order = torch.randperm(18, generator=torch.Generator().manual_seed(0))
    shuffled = [names[row] for row in order.tolist()]
    (whole,) = AdapterRouter.from_names(shuffled, adapters).planned_routes
    assert whole.rows is None and whole.which.shape == (18,)
    check_rows(model, adapters, inputs[order], lengths[order], shuffled)


def test_every_type_and_size_mixes_in_one_batch(make_model, many_rows):
    """Types mixed in one batch; sizes that cannot be stacked fall back to one route at a time, same result."""
    model = make_model(seed=6)
    inputs, lengths, names = many_rows
    adapters = {}
    for index in range(NUM_USERS):
        kind = ADAPTER_TYPES[index % 3]
        size = 4 if index < 12 else 5  # the last four: another width
        adapters[f"user{index:02d}"] = make_adapter(model, kind, seed=200 + index, size=size, extractor=index != 2)
    planned = AdapterRouter.from_names(names, adapters).planned_routes
    assert sum(route.grouped is not None for route in planned) == 0  # every type has a size mix here
    check_rows(model, adapters, inputs, lengths, names)
    same_size = {name: adapter for name, adapter in adapters.items() if name < "user12" and name != "user02"}
    kept = [name if name in same_size else None for name in names]
    planned = AdapterRouter.from_names(kept, same_size).planned_routes
    assert sorted(route.entry.name for route in planned if route.grouped is not None) == sorted(ADAPTER_TYPES)
    check_rows(model, same_size, inputs, lengths, kept)


def test_training_routes_are_not_grouped(make_model):
    """Routes in training mode or with their own frames (a multi-user training step) keep the per-route path."""
    model = make_model()
    adapters = [make_adapter(model, "encoder", seed=index) for index in range(3)]
    blocks = [RowBlock(adapter, 2, 5) for adapter in adapters]
    assert all(route.grouped is None for route in AdapterRouter.side_by_side(blocks).planned_routes)
    adapters[1].train()
    planned = AdapterRouter([([0], adapters[0]), ([1], adapters[1]), ([2], adapters[2])], 3).planned_routes
    assert [route.grouped is not None for route in planned] == [False, True]
    assert planned[1].rows.tolist() == [0, 2]


@pytest.mark.parametrize("adapter_type", ADAPTER_TYPES)
def test_one_route_over_every_row_out_of_order_puts_each_row_back_in_its_place(make_model, padded_batch, adapter_type):
    """Review, stop 39: one route whose rows [2, 0, 1] cover the whole batch must write its piece back by row index;
    taken as the output in its gathered order, row 0 would get row 2's result."""
    model = make_model(seed=4)
    adapter = make_adapter(model, adapter_type, seed=31)
    inputs, lengths = padded_batch
    with torch.inference_mode():
        shuffled, _ = model.forward_mixed(inputs, lengths, AdapterRouter([([2, 0, 1], adapter)], 3))
        ordered, _ = model.forward_mixed(inputs, lengths, AdapterRouter([([0, 1, 2], adapter)], 3))
        base, _ = model(inputs, lengths)
        for row in range(3):
            frames = math.ceil(int(lengths[row]) / 2)
            oracle = alone_with(model, adapter, inputs, lengths, row)
            assert (shuffled[row, :frames] - oracle).abs().max() <= 1e-5, row
            assert (ordered[row, :frames] - oracle).abs().max() <= 1e-5, row
            assert (shuffled[row, :frames] - base[row, :frames]).abs().max() > 1e-2  # the adapter matters
