"""One error taxonomy: every library error is a KospeechError, input errors are ValueErrors, old imports still work."""

import pytest
import torch

from kospeech import errors
from kospeech.checkpoint import load_checkpoint
from kospeech.data.audio import AudioError, load_audio
from kospeech.data.features import FeatureConfig
from kospeech.data.ksponspeech import preprocess_ksponspeech
from kospeech.data.manifest import ManifestError, read_manifest
from kospeech.data.synthetic import CorpusCard
from kospeech.errors import (
    AdapterCompatibilityError,
    CheckpointError,
    ConfigError,
    InputError,
    InvalidNameError,
    KospeechError,
    UnknownCharacterError,
    UnknownUserError,
    VocabularyError,
)
from kospeech.fileio import safe_torch_load
from kospeech.model_builder import build_deepspeech2
from kospeech.models import validate_adapter_name
from kospeech.vocabs import Vocabulary

INPUT_ERRORS = [
    "AudioError",
    "AudioTooLongError",
    "ManifestError",
    "TranscriptError",
    "UnknownCharacterError",
    "VocabularyError",
    "CheckpointError",
    "InvalidNameError",
    "ConfigError",
]


@pytest.mark.parametrize("name", errors.__all__)
def test_every_class_is_a_kospeech_error(name):
    assert issubclass(getattr(errors, name), KospeechError)


@pytest.mark.parametrize("name", INPUT_ERRORS)
def test_input_errors_are_value_errors(name):
    assert issubclass(getattr(errors, name), InputError) and issubclass(getattr(errors, name), ValueError)


def test_errors_that_are_not_about_one_input_keep_their_own_bases():
    assert issubclass(AdapterCompatibilityError, ValueError) and not issubclass(AdapterCompatibilityError, InputError)
    assert issubclass(UnknownUserError, LookupError) and not issubclass(UnknownUserError, InputError)
    assert issubclass(errors.EspeakError, RuntimeError)
    assert issubclass(errors.TrunkCacheTooLargeError, ValueError)
    error = AdapterCompatibilityError("does not fit", ["a", "b"])
    assert error.mismatches == ["a", "b"]
    unknown = UnknownUserError("zoe", ["alice"], "no file")
    assert unknown.user == "zoe" and unknown.available == ["alice"] and "alice" in str(unknown)


def test_old_import_paths_name_the_same_classes():
    from kospeech.data.ksponspeech import TranscriptError
    from kospeech.data.synthetic.espeak import EspeakError
    from kospeech.inference import UnknownUserError as inference_unknown_user
    from kospeech.models import AdapterCompatibilityError as models_compat
    from kospeech.trainer.trunk_cache import TrunkCacheTooLargeError
    from kospeech.vocabs import VocabularyError as vocabs_vocabulary_error
    from kospeech.vocabs.vocabulary import UnknownCharacterError as vocab_unknown

    assert (TranscriptError, EspeakError, TrunkCacheTooLargeError) == (
        errors.TranscriptError,
        errors.EspeakError,
        errors.TrunkCacheTooLargeError,
    )
    assert inference_unknown_user is UnknownUserError and models_compat is AdapterCompatibilityError
    assert vocab_unknown is UnknownCharacterError and AudioError is errors.AudioError
    assert vocabs_vocabulary_error is VocabularyError


def test_real_failures_raise_the_specific_classes(tmp_path):
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="garbage.wav"):
        load_audio(garbage)
    blob = tmp_path / "blob.pt"
    blob.write_bytes(b"\x00\x01 certainly not a zip archive")
    with pytest.raises(CheckpointError, match="blob.pt"):
        safe_torch_load(blob, what="checkpoint")
    vocab = Vocabulary(["<pad>", "<sos>", "<eos>", "<blank>", " ", "가"])
    with pytest.raises(UnknownCharacterError):
        vocab.encode("가나")
    manifest = tmp_path / "bad.tsv"
    manifest.write_text("only-one-column\n", encoding="utf-8")
    with pytest.raises(ManifestError, match="bad.tsv:1"):
        read_manifest(manifest, vocab)
    with pytest.raises(InvalidNameError):
        validate_adapter_name("../escape")


def test_bad_files_raise_value_errors_that_name_the_file(tmp_path):
    blob = tmp_path / "garbage.pt"
    blob.write_bytes(b"\x00\x01 certainly not a zip archive")
    with pytest.raises(CheckpointError, match="garbage.pt") as caught:
        load_checkpoint(blob)
    assert isinstance(caught.value, ValueError)
    vocab_csv = tmp_path / "vocab.csv"
    vocab_csv.write_text("id,char,freq\n0,<pad>,0\n2,<sos>,0\n", encoding="utf-8")
    with pytest.raises(VocabularyError, match="vocab.csv:3"):
        Vocabulary.from_csv(vocab_csv)
    (tmp_path / "corpus.json").write_bytes(b"\xff\xfe not json")
    with pytest.raises(InputError, match="corpus.json"):
        CorpusCard.load(tmp_path)
    with pytest.raises(InputError, match="no .pcm files"):
        preprocess_ksponspeech(tmp_path, tmp_path / "out", compat="clean", progress=False)


def test_a_checkpoint_whose_architecture_is_invalid_is_a_checkpoint_error(tmp_path):
    vocab = Vocabulary(["<pad>", "<sos>", "<eos>", "<blank>", " ", "가"])
    path = tmp_path / "bad_arch.pt"
    model_config = {"input_dim": 4, "num_classes": len(vocab), "rnn_type": "transformer"}
    raw = {
        "format_version": 1,
        "model_state_dict": {},
        "model_config": model_config,
        "vocab": vocab.to_dict(),
        "feature_config": FeatureConfig().to_dict(),
    }
    torch.save(raw, path)
    checkpoint = load_checkpoint(path)
    with pytest.raises(CheckpointError, match="bad_arch.pt: invalid model_config") as caught:
        checkpoint.build_model()
    assert isinstance(caught.value.__cause__, ConfigError)


def test_bad_config_values_raise_config_errors():
    with pytest.raises(ConfigError, match="num_mels"):
        FeatureConfig.from_dict({"num_mels": 0})
    with pytest.raises(ConfigError, match="unknown FeatureConfig keys"):
        FeatureConfig.from_dict({"mels": 80})
    with pytest.raises(ConfigError, match="rnn_type"):
        build_deepspeech2(4, 6, {"rnn_type": "transformer"})
