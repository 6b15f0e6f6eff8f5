"""Behaviour is unchanged: the golden base and format-1 adapter files give the transcripts recorded before the refactor.

The fixtures were written by the code before the adapter seam (see ``tests/fixtures/golden/README.md``). What later
changed on purpose is applied to the recorded values, not re-recorded: the clips are decoded whole
(``detect_speech=False``, as then), texts are composed without stray jamo (``compose_jamo`` of the recorded text),
and ``confidence`` has a new definition, so it is not compared.
"""

import json
from pathlib import Path

import pytest

from kospeech.inference import Recognizer
from kospeech.models import AdapterManager
from kospeech.vocabs.hangul import compose_jamo

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "fixtures" / "golden"
BASE = GOLDEN / "base.pt"
EXPECTED = json.loads((GOLDEN / "expected.json").read_text(encoding="utf-8"))
CLIPS = [str(GOLDEN / clip["file"]) for clip in EXPECTED["clips"]]
USERS = [None, "golden_head", "golden_residual_head", "golden_encoder"]


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer.from_checkpoint(BASE, adapter_dir=GOLDEN / "adapters", device="cpu", detect_speech=False)


@pytest.mark.parametrize("user", USERS)
def test_each_adapter_type_transcribes_as_before(recognizer, user):
    results = recognizer.transcribe(CLIPS, user=user, return_timestamps=True)
    for result, expected in zip(results, EXPECTED["single"][str(user)]):
        assert result.text == compose_jamo(expected["text"])
        assert result.score == pytest.approx(expected["score"], abs=1e-3)
        assert [[stamp.token, stamp.start] for stamp in result.timestamps] == expected["timestamps"]


def test_mixed_user_batch_transcribes_as_before(recognizer):
    users = [record["user"] for record in EXPECTED["mixed"]]
    results = recognizer.transcribe(CLIPS + CLIPS, user=users)
    assert [result.text for result in results] == [compose_jamo(record["text"]) for record in EXPECTED["mixed"]]
    for result, record in zip(results, EXPECTED["mixed"]):
        assert result.score == pytest.approx(record["score"], abs=1e-3)


@pytest.mark.parametrize("adapter_type", ["head", "residual_head", "encoder"])
def test_format_1_files_keep_their_info(adapter_type):
    info = AdapterManager.get_adapter_info(GOLDEN / "adapters" / f"golden_{adapter_type}_adapter.pt")
    assert info["format_version"] == 1
    assert info["adapter_type"] == adapter_type
    assert info["name"] == f"golden_{adapter_type}"
