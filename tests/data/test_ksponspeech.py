"""KsponSpeech transcript cleaning and corpus preprocessing on fixture files written here."""

import json
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import pytest
import torch

from kospeech.cli import preprocess_kspon as cli
from kospeech.data.audio import load_audio
from kospeech.data.dataset import SpeechDataset
from kospeech.data.features import FeatureConfig, FeatureExtractor
from kospeech.data.ksponspeech import (
    TranscriptError,
    clean_transcript,
    preprocess_ksponspeech,
    read_transcript,
    resolve_dual_transcriptions,
)
from kospeech.data.manifest import read_manifest
from kospeech.vocabs import Vocabulary


@pytest.mark.parametrize(
    "raw, phonetic, spelling",
    [
        ("(3시)/(세 시)에 만나자", "세 시에 만나자", "세 시에 만나자"),
        ("(70%)/(칠십 퍼센트) 할인", "칠십 퍼센트 할인", "칠십 퍼센트 할인"),
        ("(KTX)/(케이티엑스) 타고 가", "케이티엑스 타고 가", "KTX 타고 가"),
        ("(2019년)/(이천십구 년)에", "이천십구 년에", "이천십구 년에"),
        ("(1/2)/(반) 정도", "반 정도", "이 분의 일 정도"),
        ("(A/S)/(에이 에스) 센터", "에이 에스 센터", "AS 센터"),
        ("(3개)/(세 개) + (5개)/(다섯 개)", "세 개 다섯 개", "세 개 다섯 개"),
    ],
)
def test_dual_transcriptions(raw: str, phonetic: str, spelling: str) -> None:
    assert clean_transcript(raw, mode="phonetic") == phonetic
    assert clean_transcript(raw, mode="spelling") == spelling


def test_resolve_dual_keeps_everything_else() -> None:
    assert resolve_dual_transcriptions("b/ (3시)/(세 시)에 n/", "phonetic") == "b/ 세 시에 n/"
    assert resolve_dual_transcriptions("(철자)/(발음)", "spelling") == "철자"
    with pytest.raises(ValueError, match="mode must be one of"):
        resolve_dual_transcriptions("가", "phonemic")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("o/ 그래서 n/ 어/ 갔어 b/", "그래서 어 갔어"),
        ("l/ 진짜? u/", "진짜"),
        ("그+ 그 사람이 뭐* 했대", "그 그 사람이 뭐 했대"),
        ("b/아 n/ 네", "아 네"),
        ("음/ 뭐지/ 그거", "음 뭐지 그거"),
    ],
)
def test_noise_and_word_markers(raw: str, expected: str) -> None:
    assert clean_transcript(raw) == expected


def test_special_characters_percent_hash_and_whitespace() -> None:
    assert clean_transcript('  "그래",   (정말)   [응]  ~ - ;  ') == "그래 정말 응"
    assert clean_transcript("이거 50% 맞아") == "이거 50 퍼센트 맞아"
    assert clean_transcript("이거 50% 맞아", mode="spelling") == "이거 오십 퍼센트 맞아"
    assert clean_transcript("#태그 달아", mode="phonetic") == "샵 태그 달아"
    assert clean_transcript("ㅋㅋ 웃겨… ♥") == "웃겨"
    assert clean_transcript("정말요? 네, 그래요!", keep_punctuation=True) == "정말요? 네, 그래요!"
    assert clean_transcript("정말요? 네, 그래요!") == "정말요 네 그래요"


def test_noise_only_utterance_cleans_to_empty() -> None:
    assert clean_transcript("b/ n/ o/ l/ u/ /+*") == ""


def test_read_transcript_encodings(tmp_path: Path) -> None:
    text = "o/ (3시)/(세 시)에 만나자."
    cp949 = tmp_path / "cp949.txt"
    cp949.write_bytes(text.encode("cp949"))
    assert read_transcript(cp949) == text
    utf8 = tmp_path / "utf8.txt"
    utf8.write_bytes(text.encode("utf-8"))
    assert read_transcript(utf8) == text
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert read_transcript(bom) == text
    # "그래" in UTF-8 also decodes as cp949 (to mojibake); the Hangul reading must win
    short = tmp_path / "short.txt"
    short.write_bytes("그래\r\n".encode())
    assert "그래".encode().decode("cp949") != "그래"
    assert read_transcript(short) == "그래"


def test_undecodable_transcript_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "KsponSpeech_000009.txt"
    path.write_bytes(b"\xff\xfe\x00\xd8\x80\x80\xc0")
    with pytest.raises(TranscriptError, match="KsponSpeech_000009.txt.*neither cp949 nor UTF-8"):
        read_transcript(path)
    with pytest.raises(FileNotFoundError, match="absent.txt"):
        read_transcript(tmp_path / "absent.txt")


def _write_corpus(root: Path, transcripts: Dict[str, Optional[str]]) -> None:
    """KsponSpeech layout: KsponSpeech_01/KsponSpeech_0001/KsponSpeech_00000N.pcm + cp949 .txt."""
    rng = np.random.default_rng(0)
    folder = root / "KsponSpeech_01" / "KsponSpeech_0001"
    folder.mkdir(parents=True)
    for index, (stem, text) in enumerate(transcripts.items()):
        samples = (rng.standard_normal(1600 + 800 * index) * 2000).astype("<i2")
        (folder / f"{stem}.pcm").write_bytes(samples.tobytes())
        if text is not None:
            (folder / f"{stem}.txt").write_bytes(text.encode("cp949"))


CORPUS = {
    "KsponSpeech_000001": "o/ (3시)/(세 시)에 만나자.\n",
    "KsponSpeech_000002": "b/ n/\n",
    "KsponSpeech_000003": "그+ 그 (KTX)/(케이티엑스) 타고 (10%)/(십 퍼센트) 할인 받았어*?\n",
    "KsponSpeech_000004": None,
    "KsponSpeech_000005": "l/ 어/ 진짜 좋았어\n",
    "KsponSpeech_000006": "(2개)/(두 개)만 주세요 u/\n",
}


def test_preprocess_phonetic(tmp_path: Path) -> None:
    _write_corpus(tmp_path / "corpus", CORPUS)
    out = tmp_path / "out"
    summary = preprocess_ksponspeech(tmp_path / "corpus", out, mode="phonetic", progress=False)
    assert summary["utterances"] == summary["train_utterances"] == 4
    assert summary["skipped_empty_transcript"] == 1
    assert summary["skipped_missing_transcript"] == 1
    assert summary["valid_manifest"] is None
    vocab = Vocabulary.from_csv(out / "vocab.csv")
    assert summary["vocab_size"] == len(vocab)
    entries = read_manifest(out / "train.tsv", vocab=vocab)
    assert [e.transcript for e in entries] == [
        "세 시에 만나자",
        "그 그 케이티엑스 타고 십 퍼센트 할인 받았어",
        "어 진짜 좋았어",
        "두 개만 주세요",
    ]
    assert [e.audio_path.name for e in entries] == [
        "KsponSpeech_000001.pcm",
        "KsponSpeech_000003.pcm",
        "KsponSpeech_000005.pcm",
        "KsponSpeech_000006.pcm",
    ]
    assert all(vocab.decode(e.label_ids) == e.transcript for e in entries)
    seconds = sum(len(load_audio(e.audio_path)) / 16000 for e in entries)
    assert summary["hours"] == pytest.approx(seconds / 3600)


def test_preprocess_spelling_and_grapheme(tmp_path: Path) -> None:
    _write_corpus(tmp_path / "corpus", CORPUS)
    summary = preprocess_ksponspeech(
        tmp_path / "corpus", tmp_path / "out", mode="spelling", unit="grapheme", progress=False
    )
    vocab = Vocabulary.from_csv(tmp_path / "out" / "vocab.csv", unit="grapheme")
    transcripts = [e.transcript for e in read_manifest(summary["train_manifest"], vocab=vocab)]
    assert transcripts[1] == "그 그 KTX 타고 십 퍼센트 할인 받았어"
    assert "K" in vocab.tokens and "ᄀ" in vocab.tokens  # grapheme units: jamo, not syllables
    assert not any(ch.isdigit() for text in transcripts for ch in text)


def test_preprocess_valid_split_is_seeded(tmp_path: Path) -> None:
    _write_corpus(tmp_path / "corpus", CORPUS)
    first = preprocess_ksponspeech(tmp_path / "corpus", tmp_path / "a", valid_ratio=0.25, seed=3, progress=False)
    second = preprocess_ksponspeech(tmp_path / "corpus", tmp_path / "b", valid_ratio=0.25, seed=3, progress=False)
    assert (first["train_utterances"], first["valid_utterances"]) == (3, 1)
    train = read_manifest(first["train_manifest"])
    valid = read_manifest(first["valid_manifest"])
    assert {e.audio_path for e in train}.isdisjoint(e.audio_path for e in valid)
    assert [e.audio_path for e in valid] == [e.audio_path for e in read_manifest(second["valid_manifest"])]


def test_preprocess_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        preprocess_ksponspeech(tmp_path / "nowhere", tmp_path / "out", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .pcm files"):
        preprocess_ksponspeech(tmp_path / "empty", tmp_path / "out", progress=False)
    _write_corpus(tmp_path / "noise", {"KsponSpeech_000001": "b/ n/"})
    with pytest.raises(ValueError, match="no utterance"):
        preprocess_ksponspeech(tmp_path / "noise", tmp_path / "out", progress=False)
    with pytest.raises(ValueError, match="mode"):
        preprocess_ksponspeech(tmp_path / "noise", tmp_path / "out", mode="both", progress=False)


def test_preprocessed_corpus_feeds_the_dataset(tmp_path: Path) -> None:
    _write_corpus(tmp_path / "corpus", CORPUS)
    summary = preprocess_ksponspeech(tmp_path / "corpus", tmp_path / "out", progress=False)
    entries = read_manifest(summary["train_manifest"])
    extractor = FeatureExtractor(FeatureConfig())
    dataset = SpeechDataset(entries, extractor)
    features, targets = dataset[0]
    assert torch.equal(features, extractor(load_audio(entries[0].audio_path)))
    assert features.shape == (extractor.num_frames(1600), 80)
    assert targets.tolist() == list(entries[0].label_ids)


def test_cli_prints_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _write_corpus(tmp_path / "corpus", CORPUS)
    cli.main([str(tmp_path / "corpus"), str(tmp_path / "out"), "--mode", "spelling", "--no-progress"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["utterances"] == 4 and summary["mode"] == "spelling"
    assert Path(summary["vocab"]).is_file()
