"""One error taxonomy: every library error is a KospeechError, input errors are ValueErrors, old imports still work."""

import pytest

from kospeech import errors
from kospeech.data.audio import AudioError, load_audio
from kospeech.data.manifest import ManifestError, read_manifest
from kospeech.errors import (
    AdapterCompatibilityError,
    CheckpointError,
    InputError,
    InvalidNameError,
    KospeechError,
    UnknownCharacterError,
    UnknownUserError,
)
from kospeech.fileio import safe_torch_load
from kospeech.models import validate_adapter_name
from kospeech.vocabs import Vocabulary

INPUT_ERRORS = [
    "AudioError",
    "ManifestError",
    "TranscriptError",
    "UnknownCharacterError",
    "CheckpointError",
    "InvalidNameError",
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
    from kospeech.vocabs.vocabulary import UnknownCharacterError as vocab_unknown

    assert (TranscriptError, EspeakError, TrunkCacheTooLargeError) == (
        errors.TranscriptError,
        errors.EspeakError,
        errors.TrunkCacheTooLargeError,
    )
    assert inference_unknown_user is UnknownUserError and models_compat is AdapterCompatibilityError
    assert vocab_unknown is UnknownCharacterError and AudioError is errors.AudioError


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
