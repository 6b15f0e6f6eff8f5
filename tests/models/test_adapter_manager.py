"""AdapterManager: file format, round trips, compatibility checks, names, hostile files, atomic saves."""

import copy
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from kospeech.models import AdapterCompatibilityError, AdapterManager, validate_adapter_name

FEATURES = {"feature_type": "fbank", "sample_rate": 16000, "num_mels": 16, "frame_shift_ms": 10.0}
STATS = {"utterances": 40, "audio_seconds": 123.5, "cer_before": 0.31, "cer_after": 0.12}


class _MkdirOnLoad:
    """Pickles to a call of ``os.mkdir(marker)``: what a hostile adapter file would run on an unsafe load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.fixture
def adapted(make_model, perturb):
    """A tiny model with a trained-looking residual_head adapter."""
    model = make_model(seed=2, use_adapter=True, adapter_type="residual_head")
    perturb(model)
    return model


def _fresh_copy_of_base(make_model, model):
    fresh = make_model(seed=9)
    fresh.load_base_state_dict(model.base_state_dict())
    return fresh


@pytest.mark.parametrize("adapter_type", ["head", "residual_head", "encoder"])
def test_save_then_load_into_fresh_model_gives_identical_outputs(
    tmp_path, make_model, perturb, padded_batch, adapter_type
):
    model = make_model(seed=2, use_adapter=True, adapter_type=adapter_type)
    perturb(model)
    path = AdapterManager.save_adapter(
        model, tmp_path, "user_john", vocab_fingerprint="v1", feature_config=FEATURES, training_stats=STATS
    )
    assert path == tmp_path / "user_john_adapter.pt"

    fresh = _fresh_copy_of_base(make_model, model)
    info = AdapterManager.load_adapter(fresh, path, vocab_fingerprint="v1", feature_config=dict(FEATURES))
    assert fresh.adapter_type == adapter_type and not fresh.adapter.training
    assert info["missing_keys"] == [] and info["unexpected_keys"] == [] and info["mismatches"] == []
    inputs, lengths = padded_batch
    for expected, actual in zip(model(inputs, lengths), fresh(inputs, lengths)):
        assert torch.equal(expected, actual)
    assert (model(inputs, lengths)[0] - model(inputs, lengths)[2]).abs().max() > 1e-3


def test_file_is_a_plain_dict_with_the_documented_fields(tmp_path, adapted):
    path = AdapterManager.save_adapter(
        adapted, tmp_path, "a1", vocab_fingerprint="v1", feature_config=FEATURES, training_stats=STATS
    )
    content = torch.load(path, map_location="cpu", weights_only=True)
    assert content["format_version"] == 1 and content["adapter_type"] == "residual_head"
    assert content["adapter_name"] == "a1" and content["input_dim"] == 32 and content["output_dim"] == 12
    assert content["hidden_dims"] == [8] and content["dropout_p"] == 0.1 and content["num_layers"] is None
    assert content["base_fingerprint"] == adapted.base_fingerprint()
    assert content["vocab_fingerprint"] == "v1" and content["feature_config"] == FEATURES
    assert content["training_stats"] == STATS and content["created_at"].endswith("+00:00")
    assert list(content["adapter_state_dict"]) == ["0.weight", "0.bias", "3.weight", "3.bias"]

    info = AdapterManager.get_adapter_info(path)
    assert info["name"] == "a1" and info["input_dim"] == 32 and info["hidden_dims"] == [8]
    assert info["output_dim"] == 12 and info["training_stats"] == STATS and info["feature_config"] == FEATURES
    assert "adapter_state_dict" not in info
    assert info["num_parameters"] == sum(p.numel() for p in adapted.adapter.parameters())


def test_encoder_adapter_records_bottleneck_and_layers(tmp_path, make_model):
    model = make_model(use_adapter=True, adapter_type="encoder", adapter_bottleneck_dim=5)
    info = AdapterManager.get_adapter_info(AdapterManager.save_adapter(model, tmp_path, "enc"))
    assert info["adapter_type"] == "encoder" and info["hidden_dims"] == [5, 32] and info["num_layers"] == 2
    assert info["input_dim"] == info["output_dim"] == 32
    assert info["extractor_dim"] == model.conv.output_dim


def test_encoder_adapter_without_extractor_part_reads_like_files_before_it(tmp_path, make_model, padded_batch):
    """A file without ``extractor_dim`` (as every encoder file before the extractor part) loads and serves."""
    model = make_model(use_adapter=True, adapter_type="encoder", adapter_bottleneck_dim=5)
    model.add_adapter("encoder", bottleneck_dim=5, extractor_bottleneck_dim=0, replace=True)
    torch.nn.init.normal_(model.adapter.layers["0"].up.weight)
    path = AdapterManager.save_adapter(model, tmp_path, "old")
    content = torch.load(path, weights_only=True)
    assert "extractor_dim" not in content and content["hidden_dims"] == [5]
    info = AdapterManager.get_adapter_info(path)
    assert info["extractor_dim"] is None and info["hidden_dims"] == [5]
    other = copy.deepcopy(model)
    other.remove_adapter()
    AdapterManager.load_adapter(other, path)
    inputs, lengths = padded_batch
    model.eval(), other.eval()
    torch.testing.assert_close(other(inputs, lengths)[2], model(inputs, lengths)[2])


def test_loading_into_a_different_base_raises_and_force_allows_it(tmp_path, make_model, adapted, padded_batch):
    path = AdapterManager.save_adapter(adapted, tmp_path, "john", vocab_fingerprint="v1", feature_config=FEATURES)
    other = make_model(seed=11)
    with pytest.raises(AdapterCompatibilityError, match="base_fingerprint") as caught:
        AdapterManager.load_adapter(other, path)
    assert isinstance(caught.value, ValueError) and len(caught.value.mismatches) == 1
    assert other.adapter is None

    with pytest.raises(AdapterCompatibilityError) as caught:
        AdapterManager.load_adapter(other, path, vocab_fingerprint="v2", feature_config={**FEATURES, "num_mels": 80})
    message = str(caught.value)
    assert "vocab_fingerprint" in message and "feature_config.num_mels: file has 16, given 80" in message
    assert len(caught.value.mismatches) == 3

    info = AdapterManager.load_adapter(other, path, force=True)
    assert len(info["mismatches"]) == 1 and other.adapter_type == "residual_head"
    inputs, lengths = padded_batch
    assert torch.equal(other.adapter(torch.ones(1, 2, 32)), adapted.adapter(torch.ones(1, 2, 32)))

    same_base = _fresh_copy_of_base(make_model, adapted)
    with pytest.raises(AdapterCompatibilityError, match="vocab_fingerprint"):
        AdapterManager.load_adapter(same_base, path, vocab_fingerprint="other")
    assert same_base.adapter is None


def test_adapter_of_other_sizes_cannot_be_forced(tmp_path, adapted):
    from kospeech.models import DeepSpeech2

    path = AdapterManager.save_adapter(adapted, tmp_path, "john")
    bigger = DeepSpeech2(16, 20, num_rnn_layers=2, rnn_hidden_dim=16)
    with pytest.raises(AdapterCompatibilityError, match="output_dim 12 != num_classes 20"):
        AdapterManager.load_adapter(bigger, path, force=True)


def test_loading_replaces_an_adapter_of_another_type_and_reuses_a_matching_one(tmp_path, make_model, adapted):
    path = AdapterManager.save_adapter(adapted, tmp_path, "john")
    target = _fresh_copy_of_base(make_model, adapted)
    target.add_adapter("encoder", bottleneck_dim=4)
    AdapterManager.load_adapter(target, path)
    assert target.adapter_type == "residual_head"
    module = target.adapter
    AdapterManager.load_adapter(target, path)
    assert target.adapter is module


def test_hostile_pickle_is_refused_without_running_code(tmp_path, make_model):
    probe = tmp_path / "probe"
    probe.mkdir()
    torch.save({"payload": _MkdirOnLoad(probe / "ran")}, probe / "evil.pt")
    torch.load(probe / "evil.pt", weights_only=False)  # the unsafe loader runs the payload ...
    assert (probe / "ran").is_dir()

    save_dir = tmp_path / "adapters"
    save_dir.mkdir()
    marker = tmp_path / "pwned"
    evil = save_dir / "evil_adapter.pt"
    torch.save({"format_version": 1, "adapter_state_dict": _MkdirOnLoad(marker)}, evil)
    with pytest.raises(ValueError, match="weights-only"):
        AdapterManager.get_adapter_info(evil)
    with pytest.raises(ValueError, match="weights-only"):
        AdapterManager.load_adapter(make_model(), evil)
    assert AdapterManager.list_adapters(save_dir) == []
    assert not marker.exists()  # ... ours never does


def test_malformed_files_are_refused_with_the_reason(tmp_path, adapted):
    path = AdapterManager.save_adapter(adapted, tmp_path, "john")
    content = torch.load(path, weights_only=True)
    weights = content["adapter_state_dict"]
    cases = {
        "format_version": ({**content, "format_version": 2}, "format_version 2 is not supported"),
        "missing field": ({k: v for k, v in content.items() if k != "base_fingerprint"}, "base_fingerprint"),
        "bad type": ({**content, "hidden_dims": "8"}, "'hidden_dims' must be list"),
        "unknown type": ({**content, "adapter_type": "lora"}, "unknown adapter_type 'lora'"),
        "missing weight": (
            {**content, "adapter_state_dict": {k: v for k, v in weights.items() if k != "3.bias"}},
            r"missing keys \['3.bias'\]",
        ),
        "bad shape": (
            {**content, "adapter_state_dict": {**weights, "0.weight": torch.zeros(8, 31)}},
            r"0.weight: expected shape \(8, 32\), found \(8, 31\)",
        ),
        "bad dtype": (
            {**content, "adapter_state_dict": {**weights, "0.bias": torch.zeros(8, dtype=torch.long)}},
            "0.bias: expected a floating point tensor",
        ),
        "not a dict": ([1, 2, 3], "must hold a dict"),
    }
    for label, (broken, message) in cases.items():
        target = tmp_path / f"broken_{label.replace(' ', '_')}_adapter.pt"
        torch.save(broken, target)
        with pytest.raises(ValueError, match=message):
            AdapterManager.get_adapter_info(target)


@pytest.mark.parametrize(
    "name", ["../x", "a/b", "a\\b", "", "a\x00b", "\u0430n4", "x" * 200, "x" * 65, ".hidden", "a..b", "..", " a", 7]
)
def test_invalid_names_are_refused_everywhere(tmp_path, adapted, name):
    with pytest.raises(ValueError, match="1 to 64 ASCII"):
        validate_adapter_name(name)
    with pytest.raises(ValueError, match="invalid adapter name"):
        AdapterManager.save_adapter(adapted, tmp_path, name)
    with pytest.raises(ValueError, match="invalid adapter name"):
        AdapterManager.delete_adapter(tmp_path, name)
    with pytest.raises(ValueError, match="invalid adapter name"):
        AdapterManager.find_adapter(tmp_path, name)
    assert list(tmp_path.iterdir()) == []
    assert not (tmp_path.parent / "x_adapter.pt").exists()


def test_valid_names():
    for name in ["an4", "user_john", "an4.v2-final", "A" * 64, "x_adapter"]:
        assert validate_adapter_name(name) == name


def test_exact_names_never_confuse_an4_and_an4_v2(tmp_path, make_model, perturb):
    first = make_model(seed=2, use_adapter=True)
    perturb(first)
    second = make_model(seed=3, use_adapter=True)
    second.load_base_state_dict(first.base_state_dict())
    perturb(second)
    AdapterManager.save_adapter(second, tmp_path, "an4_v2")
    AdapterManager.save_adapter(first, tmp_path, "an4")
    AdapterManager.save_adapter(first, tmp_path, "x_adapter")
    (tmp_path / "an4_adapter.pt.bak").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not an adapter")

    assert [info["name"] for info in AdapterManager.list_adapters(tmp_path)] == ["an4", "an4_v2", "x_adapter"]
    assert AdapterManager.find_adapter(tmp_path, "an4").name == "an4_adapter.pt"
    with pytest.raises(FileNotFoundError, match=r"'an'.*available: \['an4', 'an4_v2', 'x_adapter'\]"):
        AdapterManager.find_adapter(tmp_path, "an")

    target = _fresh_copy_of_base(make_model, first)
    AdapterManager.load_adapter(target, AdapterManager.find_adapter(tmp_path, "an4"))
    probe = torch.ones(1, 2, 32)
    assert torch.equal(target.adapter(probe), first.adapter(probe))
    assert not torch.equal(target.adapter(probe), second.adapter(probe))

    assert AdapterManager.delete_adapter(tmp_path, "an4") == tmp_path / "an4_adapter.pt"
    assert (tmp_path / "an4_v2_adapter.pt").is_file()
    assert [info["name"] for info in AdapterManager.list_adapters(tmp_path)] == ["an4_v2", "x_adapter"]
    with pytest.raises(FileNotFoundError, match=r"available: \['an4_v2', 'x_adapter'\]"):
        AdapterManager.delete_adapter(tmp_path, "an4")


def test_symlinks_leading_outside_the_directory_are_not_followed(tmp_path, make_model, adapted):
    outside = tmp_path / "outside"
    save_dir = tmp_path / "adapters"
    real = AdapterManager.save_adapter(adapted, outside, "secret")
    AdapterManager.save_adapter(adapted, save_dir, "ok")
    (save_dir / "evil_adapter.pt").symlink_to(real)
    with pytest.raises(ValueError, match="outside"):
        AdapterManager.find_adapter(save_dir, "evil")
    with pytest.raises(ValueError, match="outside"):
        AdapterManager.get_adapter_info(save_dir / "evil_adapter.pt")
    with pytest.raises(ValueError, match="outside"):
        AdapterManager.load_adapter(make_model(), save_dir / "evil_adapter.pt")
    assert [info["name"] for info in AdapterManager.list_adapters(save_dir)] == ["ok"]
    (save_dir / "alias_adapter.pt").symlink_to(save_dir / "ok_adapter.pt")
    assert [info["name"] for info in AdapterManager.list_adapters(save_dir)] == ["alias", "ok"]


def test_crash_mid_save_leaves_the_previous_file_intact(tmp_path, monkeypatch, make_model, adapted, perturb):
    path = AdapterManager.save_adapter(adapted, tmp_path, "john", training_stats={"version": 1})
    previous = path.read_bytes()
    perturb(adapted)

    def crash(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a zip file")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="No space left"):
        AdapterManager.save_adapter(adapted, tmp_path, "john", training_stats={"version": 2})
    monkeypatch.undo()

    assert path.read_bytes() == previous
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["john_adapter.pt"]
    assert AdapterManager.get_adapter_info(path)["training_stats"] == {"version": 1}


def test_unstorable_metadata_is_refused_before_writing(tmp_path, adapted):
    with pytest.raises(TypeError, match=r"training_stats.when: a pathlib.PosixPath"):
        AdapterManager.save_adapter(adapted, tmp_path, "john", training_stats={"when": tmp_path})
    adapted.remove_adapter()
    with pytest.raises(ValueError, match="no adapter"):
        AdapterManager.save_adapter(adapted, tmp_path, "john")
    assert list(tmp_path.iterdir()) == []


def test_dataparallel_wrapped_model_saves_the_same_file(tmp_path, adapted):
    plain = AdapterManager.save_adapter(adapted, tmp_path / "plain", "john", training_stats=STATS)
    wrapped = AdapterManager.save_adapter(nn.DataParallel(adapted), tmp_path / "wrapped", "john", training_stats=STATS)
    first = torch.load(plain, weights_only=True)
    second = torch.load(wrapped, weights_only=True)
    first_weights, second_weights = first.pop("adapter_state_dict"), second.pop("adapter_state_dict")
    first.pop("created_at"), second.pop("created_at")
    assert first == second
    assert first_weights.keys() == second_weights.keys()
    assert all(torch.equal(first_weights[key], second_weights[key]) for key in first_weights)

    target = nn.DataParallel(_fresh_model_like(adapted))
    AdapterManager.load_adapter(target, wrapped)
    assert target.module.adapter_type == "residual_head"


def _fresh_model_like(model):
    from kospeech.models import DeepSpeech2

    fresh = DeepSpeech2(16, 12, num_rnn_layers=2, rnn_hidden_dim=16)
    fresh.load_base_state_dict(model.base_state_dict())
    return fresh


def test_missing_directory_and_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter directory not found"):
        AdapterManager.list_adapters(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="adapter not found"):
        AdapterManager.get_adapter_info(tmp_path / "nope_adapter.pt")


def test_deleting_an_adapter_with_kept_versions_and_no_active_file_removes_them(tmp_path, adapted):
    """A first training that was rejected leaves versions and no active file: deleting still removes everything."""
    AdapterManager.save_adapter(adapted, tmp_path, "zoe")
    assert AdapterManager.reinstate(tmp_path, "zoe", None) is True
    assert not (tmp_path / "zoe_adapter.pt").exists() and AdapterManager.list_versions(tmp_path, "zoe")
    assert AdapterManager.delete_adapter(tmp_path, "zoe") == tmp_path / "zoe_adapter.pt"
    assert not (tmp_path / "versions" / "zoe").exists()
    with pytest.raises(FileNotFoundError, match=r"no adapter named 'zoe'"):
        AdapterManager.delete_adapter(tmp_path, "zoe")
