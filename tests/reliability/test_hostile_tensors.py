"""Tensors the weights-only loader rebuilds but no model can use (round 2): meta, sparse, quantized, complex,
subclassed and expanded tensors, integer weights and huge finite weights, in adapter files and checkpoints."""

import logging

import pytest
import torch

from kospeech.checkpoint import load_checkpoint
from kospeech.errors import CheckpointError
from kospeech.inference import Recognizer
from kospeech.models import AdapterManager
from kospeech.models.adapter_manager import MAX_ADAPTER_WEIGHT


def _quantized(weight):
    return torch.quantize_per_tensor(weight.contiguous(), 0.01, 0, torch.qint8)


HOSTILE = {
    "meta": (lambda weight: torch.empty(weight.shape, device="meta"), "a tensor on the 'meta' device"),
    "sparse_coo": (lambda weight: weight.to_sparse(), "a sparse_coo tensor"),
    "sparse_csr": (lambda weight: weight.to_sparse_csr(), "a sparse_csr tensor"),
    "quantized": (_quantized, "a quantized tensor"),
    "complex": (lambda weight: weight.to(torch.complex64), r"a complex tensor \(torch.complex64\)"),
    "expanded": (lambda weight: weight[:1].expand(weight.shape), r"an expanded view .* of smaller storage"),
    "nested_list_meta": (lambda weight: [torch.empty(3, device="meta")], "a tensor on the 'meta' device"),
}


def _rewrite(path, section, key, make):
    raw = torch.load(path, weights_only=True)
    raw[section][key] = make(raw[section][key])
    torch.save(raw, path)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_tensors_in_an_adapter_are_refused_by_key_and_file(world, kind, caplog):
    make, problem = HOSTILE[kind]
    path = world.adapter_dir / "alice_adapter.pt"
    key = "0.weight"
    _rewrite(path, "adapter_state_dict", key, make)
    pattern = rf"alice_adapter\.pt: adapter entry 'adapter_state_dict\.{key}(\[0\])?': {problem}"
    with pytest.raises(CheckpointError, match=pattern):
        AdapterManager.get_adapter_info(path)
    with pytest.raises(CheckpointError, match=pattern):
        AdapterManager.load_adapter(world.model, path)
    with caplog.at_level(logging.WARNING):
        listed = AdapterManager.list_adapters(world.adapter_dir)
    assert [info["name"] for info in listed] == ["bob"]  # the bad file is skipped, the folder still lists
    assert "alice_adapter.pt" in caplog.text and "only dense tensors on the CPU" in caplog.text
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir)
    with pytest.raises(CheckpointError, match="alice_adapter.pt"):
        recognizer.transcribe(world.wavs[0], user="alice")
    assert isinstance(recognizer.transcribe(world.wavs[0], user="bob").text, str)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_tensors_in_a_checkpoint_are_refused_by_key_and_file(world, kind):
    make, problem = HOSTILE[kind]
    key = "fc.1.weight"
    _rewrite(world.checkpoint, "model_state_dict", key, make)
    with pytest.raises(CheckpointError, match=rf"base\.pt: checkpoint entry 'model_state_dict\.{key}(\[0\])?'"):
        load_checkpoint(world.checkpoint)
    with pytest.raises(CheckpointError, match=problem):
        Recognizer.from_checkpoint(world.checkpoint)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.uint8])
def test_integer_adapter_weights_are_refused(world, dtype):
    path = world.adapter_dir / "bob_adapter.pt"
    _rewrite(path, "adapter_state_dict", "0.weight", lambda weight: weight.to(dtype))
    with pytest.raises(CheckpointError, match=r"bob_adapter\.pt: .*0\.weight: expected a floating point tensor"):
        AdapterManager.get_adapter_info(path)


@pytest.mark.parametrize("scale", [1e30, MAX_ADAPTER_WEIGHT * 10])
def test_huge_finite_adapter_weights_are_refused(world, scale):
    path = world.adapter_dir / "bob_adapter.pt"
    _rewrite(path, "adapter_state_dict", "0.weight", lambda weight: weight / weight.abs().max() * scale)
    with pytest.raises(CheckpointError, match=r"bob_adapter\.pt: .*0\.weight: holds \|w\| = .* beyond 10000"):
        AdapterManager.get_adapter_info(path)
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir)
    with pytest.raises(CheckpointError, match="bob_adapter.pt"):
        recognizer.transcribe(world.wavs[0], user="bob")


def test_weights_at_the_bound_are_accepted(world):
    path = world.adapter_dir / "bob_adapter.pt"
    _rewrite(path, "adapter_state_dict", "0.weight", lambda weight: weight / weight.abs().max() * MAX_ADAPTER_WEIGHT)
    assert AdapterManager.get_adapter_info(path)["name"] == "bob"
