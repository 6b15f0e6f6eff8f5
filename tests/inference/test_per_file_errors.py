"""Per-file error handling catches input errors only: a bad file is a per-file result, a mismatched adapter is not."""

import pytest
from inference_world import build_base, save_user_adapter

from kospeech.errors import AdapterCompatibilityError, AudioError
from kospeech.inference import Recognizer, transcribe_files


def test_bad_audio_is_a_per_file_result(world, tmp_path):
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt garbage")
    files = [world.wavs[0], broken, world.wavs[1]]
    results = [result for _, _, result in transcribe_files(recognizer, files, ["alice", "alice", None])]
    assert isinstance(results[1], AudioError) and str(broken) in str(results[1])
    assert results[0].adapter == "alice" and results[2].adapter is None


def test_an_adapter_replaced_by_an_incompatible_one_mid_run_stops_the_run(world):
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir)
    files = list(world.wavs[:3])
    run = transcribe_files(recognizer, files, ["alice"] * len(files), files_per_call=1)
    first = next(run)
    assert first[2].adapter == "alice"
    other_base = build_base(seed=7)  # other weights: its adapters carry another base fingerprint
    save_user_adapter(other_base, world.adapter_dir, "alice", world.users["alice"], seed=9)
    with pytest.raises(AdapterCompatibilityError, match="base_fingerprint"):
        next(run)
