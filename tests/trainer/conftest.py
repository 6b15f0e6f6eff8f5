"""Fixtures for trainer tests: a tiny synthetic Korean corpus (built once per session) and tiny configs."""

import pytest

from kospeech.data.features import FeatureConfig
from kospeech.data.manifest import read_manifest
from kospeech.data.synthetic import ensure_corpus
from kospeech.model_builder import DeepSpeech2Config
from kospeech.vocabs import Vocabulary


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    corpus_dir = tmp_path_factory.mktemp("corpus") / "tiny"
    ensure_corpus(corpus_dir, preset="tiny", seed=0)
    return corpus_dir


@pytest.fixture(scope="session")
def corpus_vocab(tiny_corpus):
    return Vocabulary.from_csv(tiny_corpus / "vocab.csv")


@pytest.fixture
def base_entries(tiny_corpus, corpus_vocab):
    return read_manifest(tiny_corpus / "base" / "train.tsv", corpus_vocab)


@pytest.fixture
def feature_config():
    return FeatureConfig(num_mels=40)


@pytest.fixture
def tiny_model_config():
    return DeepSpeech2Config(num_rnn_layers=2, rnn_hidden_dim=64, dropout_p=0.0)
