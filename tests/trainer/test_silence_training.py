"""Training for real recordings: silence padding in the data pipeline, and a base started from another's weights."""

import dataclasses

import pytest
import torch

from kospeech.checkpoint import load_checkpoint, save_checkpoint
from kospeech.config import TrainJobConfig
from kospeech.data.dataset import SpeechDataset
from kospeech.data.features import FeatureConfig, FeatureExtractor
from kospeech.data.silence_padding import SilencePadding
from kospeech.errors import ConfigError
from kospeech.model_builder import build_deepspeech2
from kospeech.trainer.configs import AdapterTrainConfig, DataConfig, TrainConfig
from kospeech.trainer.recipes import train_base_model
from kospeech.trainer.trunk_cache import train_cache_blocker


def test_padded_items_are_longer_reproducible_and_keep_their_labels(base_entries, feature_config):
    extractor = FeatureExtractor(feature_config)
    plain = SpeechDataset(base_entries[:6], extractor, seed=3)
    padded = SpeechDataset(base_entries[:6], extractor, seed=3, silence_padding=SilencePadding(16000, probability=1.0))
    longer = 0
    for index in range(6):
        features, labels = padded[index]
        again, _ = padded[index]
        reference, reference_labels = plain[index]
        assert torch.equal(features, again) and torch.equal(labels, reference_labels)
        assert features.shape[0] >= reference.shape[0]
        longer += features.shape[0] > reference.shape[0]
    assert longer >= 5
    first_epoch = [padded[index][0] for index in range(6)]
    padded.set_epoch(1)
    assert any(first.shape != padded[index][0].shape for index, first in enumerate(first_epoch))


def test_silence_padding_rules_out_the_trunk_cache():
    config = AdapterTrainConfig(base_model_path="base.pt", spec_augment=False, silence_padding=True)
    assert "silence padding" in train_cache_blocker(config, FeatureConfig())
    assert train_cache_blocker(dataclasses.replace(config, silence_padding=False), FeatureConfig()) is None


def _job(tmp_path, tiny_corpus, feature_config, model_config, **train):
    data = DataConfig(
        corpus_dir=str(tiny_corpus),
        train_manifest=str(tiny_corpus / "base" / "train.tsv"),
        valid_manifest=str(tiny_corpus / "base" / "dev.tsv"),
        vocab_path=str(tiny_corpus / "vocab.csv"),
        unit="character",
    )
    config = TrainConfig(
        output_dir=str(tmp_path / "run"),
        batch_size=8,
        num_epochs=1,
        num_workers=0,
        log_every=1000,
        checkpoint_every=0,
        num_threads=1,
        device="cpu",
        **train,
    )
    return TrainJobConfig(audio=feature_config, model=model_config, data=data, train=config)


def test_base_training_can_start_from_a_checkpoint_and_pad_with_silence(
    tmp_path, tiny_corpus, corpus_vocab, feature_config, tiny_model_config
):
    torch.manual_seed(5)
    start = build_deepspeech2(feature_config.feature_dim, len(corpus_vocab), tiny_model_config)
    record = {"input_dim": feature_config.feature_dim, "num_classes": len(corpus_vocab), **tiny_model_config.__dict__}
    origin = save_checkpoint(
        tmp_path / "start.pt", start, model_config=record, vocab=corpus_vocab, feature_config=feature_config
    )
    job = _job(
        tmp_path,
        tiny_corpus,
        feature_config,
        tiny_model_config,
        init_from=str(origin),
        silence_padding=True,
        peak_lr=0.0,
        init_lr=0.0,
        final_lr=0.0,
        lr_scheduler="constant",
        spec_augment=False,
    )
    results = train_base_model(job)
    trained = load_checkpoint(results["checkpoint"])
    for key, value in start.state_dict().items():
        if value.is_floating_point() and "running" not in key:  # BatchNorm statistics do move in train mode
            torch.testing.assert_close(trained.model_state_dict[key], value)

    other = dataclasses.replace(tiny_model_config, rnn_hidden_dim=32)
    with pytest.raises(ConfigError, match="init_from"):
        train_base_model(_job(tmp_path / "other", tiny_corpus, feature_config, other, init_from=str(origin)))
