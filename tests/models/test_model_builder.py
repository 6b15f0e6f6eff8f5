"""DeepSpeech2Config, build_deepspeech2 and the configs/model YAML files."""

import dataclasses
import inspect
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from kospeech.model_builder import DeepSpeech2Config, build_deepspeech2
from kospeech.models import DeepSpeech2

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "model"


def test_every_field_has_a_type_default_and_help():
    for item in dataclasses.fields(DeepSpeech2Config):
        assert item.metadata.get("help"), item.name
        assert item.default is not dataclasses.MISSING or item.default_factory is not dataclasses.MISSING
    assert DeepSpeech2Config().adapter_hidden_dims == [512, 256]
    assert DeepSpeech2Config().adapter_hidden_dims is not DeepSpeech2Config().adapter_hidden_dims


def test_adapter_settings_are_declared_once_for_model_and_training_configs():
    from kospeech.models.adapter import AdapterSettings
    from kospeech.trainer.configs import AdapterTrainConfig

    shared = {item.name for item in dataclasses.fields(AdapterSettings)}
    assert issubclass(DeepSpeech2Config, AdapterSettings) and issubclass(AdapterTrainConfig, AdapterSettings)
    assert shared <= {item.name for item in dataclasses.fields(DeepSpeech2Config)}
    assert AdapterTrainConfig(base_model_path="x").adapter_config() == DeepSpeech2Config().adapter_config()


def test_config_fields_match_the_model_constructor():
    parameters = inspect.signature(DeepSpeech2.__init__).parameters
    defaults = DeepSpeech2Config()
    for item in dataclasses.fields(DeepSpeech2Config):
        assert item.name in parameters, item.name
        if item.name != "adapter_hidden_dims":  # the constructor's None means [512, 256]
            assert parameters[item.name].default == getattr(defaults, item.name), item.name


@pytest.mark.parametrize("name", ["ds2", "ds2_small", "ds2_tiny"])
def test_yaml_files_compose_against_the_dataclass(name):
    values = OmegaConf.load(CONFIG_DIR / f"{name}.yaml")
    assert set(values) <= {item.name for item in dataclasses.fields(DeepSpeech2Config)}
    merged = OmegaConf.merge(OmegaConf.structured(DeepSpeech2Config), values)
    if name == "ds2":
        assert OmegaConf.to_container(merged) == dataclasses.asdict(DeepSpeech2Config())
    if name == "ds2_tiny":
        model = build_deepspeech2(16, 12, merged)
        assert model.num_rnn_layers == 2 and model.rnn_hidden_dim == 32


def test_build_from_dataclass_dict_and_dictconfig():
    config = DeepSpeech2Config(
        num_rnn_layers=1,
        rnn_hidden_dim=8,
        rnn_type="lstm",
        use_adapter=True,
        adapter_type="encoder",
        adapter_bottleneck_dim=3,
    )
    from_dataclass = build_deepspeech2(16, 12, config)
    from_dict = build_deepspeech2(16, 12, dataclasses.asdict(config))
    from_dictconfig = build_deepspeech2(16, 12, OmegaConf.structured(config))
    for model in (from_dataclass, from_dict, from_dictconfig):
        assert model.rnn_type == "lstm" and model.adapter_type == "encoder"
        assert model.adapter.bottleneck_dim == 3 and model.rnn_output_dim == 16
    partial = build_deepspeech2(16, 12, {"num_rnn_layers": 1, "rnn_hidden_dim": 4, "bidirectional": False})
    assert partial.rnn_output_dim == 4 and partial.activation == "hardtanh" and not partial.use_adapter


def test_bad_configs_are_rejected_with_the_field_named():
    small = {"num_rnn_layers": 1, "rnn_hidden_dim": 4}
    with pytest.raises(ValueError, match=r"unknown model config fields \['hidden_size'\]"):
        build_deepspeech2(16, 12, {**small, "hidden_size": 3})
    with pytest.raises(TypeError, match="'num_rnn_layers' must be int"):
        build_deepspeech2(16, 12, {"num_rnn_layers": "2"})
    with pytest.raises(TypeError, match="'bidirectional' must be bool"):
        build_deepspeech2(16, 12, {**small, "bidirectional": "yes"})
    with pytest.raises(TypeError, match="'adapter_hidden_dims' must be List"):
        build_deepspeech2(16, 12, {**small, "adapter_hidden_dims": [1.5]})
    with pytest.raises(ValueError, match=r"rnn_type 'gruu'.*dropout_p must be in \[0, 1\), got 1.0"):
        build_deepspeech2(16, 12, {**small, "rnn_type": "gruu", "dropout_p": 1.0})
    with pytest.raises(ValueError, match="adapter_type 'lora'"):
        build_deepspeech2(16, 12, {**small, "adapter_type": "lora"})
    with pytest.raises(TypeError, match="config must be"):
        build_deepspeech2(16, 12, ["gru"])


@pytest.mark.parametrize("extractor_dim", [0, 5])
def test_the_encoder_adapter_s_extractor_width_is_built_as_configured(extractor_dim):
    """Review, stop 37: build_deepspeech2 left adapter_extractor_bottleneck_dim out, so every model had the default
    32 and a checkpoint that recorded 0 could not be built again."""
    config = {"num_rnn_layers": 1, "rnn_hidden_dim": 8, "use_adapter": True, "adapter_type": "encoder"}
    model = build_deepspeech2(16, 12, {**config, "adapter_extractor_bottleneck_dim": extractor_dim})
    direct = DeepSpeech2(16, 12, **config, adapter_extractor_bottleneck_dim=extractor_dim)
    assert set(model.state_dict()) == set(direct.state_dict())
    assert (model.adapter.extractor is None) == (extractor_dim == 0)
    with pytest.raises(ValueError, match="adapter_extractor_bottleneck_dim must be >= 0"):
        build_deepspeech2(16, 12, {**config, "adapter_extractor_bottleneck_dim": -1})
