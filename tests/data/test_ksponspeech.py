"""KsponSpeech transcript cleaning and corpus preprocessing on fixture files written here.

The expectations of the KoSpeech rules (``sentence_filter``, the label files) are the outputs of upstream KoSpeech's
``dataset/kspon/preprocess`` on these inputs, written out by hand.
"""

import codecs
import json
import logging
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest
import soundfile as sf
import torch

from kospeech.cli import preprocess_kspon as cli
from kospeech.data.audio import load_audio
from kospeech.data.dataset import SpeechDataset
from kospeech.data.features import FeatureConfig, FeatureExtractor
from kospeech.data.ksponspeech import (
    COMPAT_MODES,
    PERCENT_FILES,
    TranscriptError,
    bracket_filter,
    clean_transcript,
    parse_trn_line,
    percent_word,
    preprocess_ksponspeech,
    preprocess_ksponspeech_eval,
    read_kospeech_transcript,
    read_transcript,
    read_trn,
    resolve_dual_transcriptions,
    sentence_filter,
    special_filter,
)
from kospeech.data.manifest import read_manifest
from kospeech.errors import InputError
from kospeech.vocabs import Vocabulary


@pytest.mark.parametrize(
    "raw, phonetic, spelling",
    [
        ("(3시)/(세 시)에 만나자", "세 시에 만나자", "세 시에 만나자"),
        ("(70%)/(칠십 퍼센트) 할인", "칠십 퍼센트 할인", "칠십 퍼센트 할인"),
        ("(KTX)/(케이티엑스) 타고 가", "케이티엑스 타고 가", "KTX 타고 가"),
        ("(2019년)/(이천십구 년)에", "이천십구 년에", "이천십구 년에"),
        ("(1/2)/(반) 정도", "반 정도", "반 정도"),  # a number reads as said (stop 34; was 이 분의 일 정도)
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
    assert resolve_dual_transcriptions("(2)/(두) 개", "spelling") == "두 개"  # a number: as it was said, below
    with pytest.raises(ValueError, match="mode must be one of"):
        resolve_dual_transcriptions("가", "phonemic")


@pytest.mark.parametrize(
    "raw, spelling",
    [
        ("(2)/(두) 개 주세요", "두 개 주세요"),
        ("(3)/(세) 시에 만나", "세 시에 만나"),
        ("(20)/(스무) 살이야", "스무 살이야"),
        ("(1)/(일) 대 (1)/(일)로", "일 대 일로"),
        ("(3)/(삼) 시간", "삼 시간"),
    ],
)
def test_a_spelled_number_reads_as_the_speaker_said_it(raw: str, spelling: str) -> None:
    """Review, stop 34: the spelling side was read out alone (``(2)/(두) 개`` became ``이 개``); read out with the next
    word, the reading was a guess that the pronunciation beside it contradicted (``(1)/(일) 대`` became ``한 대``)."""
    assert clean_transcript(raw, mode="spelling") == spelling


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
    summary = preprocess_ksponspeech(tmp_path / "corpus", out, mode="phonetic", compat="clean", progress=False)
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
        tmp_path / "corpus", tmp_path / "out", mode="spelling", unit="grapheme", compat="clean", progress=False
    )
    vocab = Vocabulary.from_csv(tmp_path / "out" / "vocab.csv", unit="grapheme")
    transcripts = [e.transcript for e in read_manifest(summary["train_manifest"], vocab=vocab)]
    assert transcripts[1] == "그 그 KTX 타고 십 퍼센트 할인 받았어"
    assert "K" in vocab.tokens and "ᄀ" in vocab.tokens  # grapheme units: jamo, not syllables
    assert not any(ch.isdigit() for text in transcripts for ch in text)


def test_preprocess_valid_split_is_seeded(tmp_path: Path) -> None:
    _write_corpus(tmp_path / "corpus", CORPUS)
    first = preprocess_ksponspeech(
        tmp_path / "corpus", tmp_path / "a", valid_ratio=0.25, seed=3, compat="clean", progress=False
    )
    second = preprocess_ksponspeech(
        tmp_path / "corpus", tmp_path / "b", valid_ratio=0.25, seed=3, compat="clean", progress=False
    )
    assert (first["train_utterances"], first["valid_utterances"]) == (3, 1)
    train = read_manifest(first["train_manifest"])
    valid = read_manifest(first["valid_manifest"])
    assert {e.audio_path for e in train}.isdisjoint(e.audio_path for e in valid)
    assert [e.audio_path for e in valid] == [e.audio_path for e in read_manifest(second["valid_manifest"])]
    again = preprocess_ksponspeech(
        tmp_path / "corpus", tmp_path / "a", compat="clean", progress=False
    )  # nothing held out now
    assert again["valid_manifest"] is None and not (tmp_path / "a" / "valid.tsv").exists()


def test_an_earlier_run_s_files_this_run_does_not_write_are_removed(tmp_path: Path, caplog) -> None:
    """Stop 37: KoSpeech's label files and the evaluation manifests of an earlier run into the same folder were left
    beside this run's vocabulary, of other labels."""
    _write_kospeech_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    first = preprocess_ksponspeech(tmp_path / "corpus", out, compat="kospeech", progress=False)
    (out / "eval_clean.tsv").write_text("an earlier run's evaluation manifest\n", encoding="utf-8")
    assert Path(first["kospeech_labels"]).exists() and Path(first["kospeech_transcripts"]).exists()
    with caplog.at_level("WARNING", logger="kospeech.data.ksponspeech"):
        preprocess_ksponspeech(tmp_path / "corpus", out, compat="clean", progress=False)
    left = sorted(path.name for path in out.iterdir())
    assert left == ["train.tsv", "vocab.csv"], left
    for name in ("eval_clean.tsv", "aihub_labels.csv", "transcripts.txt"):
        assert f"removed {out / name} left by an earlier run" in caplog.text


def test_preprocess_refuses_bad_input(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        preprocess_ksponspeech(tmp_path / "nowhere", tmp_path / "out", compat="clean", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .pcm files"):
        preprocess_ksponspeech(tmp_path / "empty", tmp_path / "out", compat="clean", progress=False)
    _write_corpus(tmp_path / "noise", {"KsponSpeech_000001": "b/ n/"})
    with pytest.raises(ValueError, match="no utterance"):
        preprocess_ksponspeech(tmp_path / "noise", tmp_path / "out", compat="clean", progress=False)
    with pytest.raises(ValueError, match="mode"):
        preprocess_ksponspeech(tmp_path / "noise", tmp_path / "out", mode="both", compat="clean", progress=False)

    # review, stop 39: an output folder that cannot be made was found after the whole corpus had been read
    _write_corpus(tmp_path / "corpus", CORPUS)
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(ValueError, match=r"the output folder .*taken/out cannot be made: Not a directory"):
        preprocess_ksponspeech(tmp_path / "corpus", tmp_path / "taken" / "out", compat="clean", progress=True)


def test_preprocessed_corpus_feeds_the_dataset(tmp_path: Path) -> None:
    _write_corpus(tmp_path / "corpus", CORPUS)
    summary = preprocess_ksponspeech(tmp_path / "corpus", tmp_path / "out", compat="clean", progress=False)
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

    # review, stop 39: the run's settings were recorded nowhere
    record = json.loads((tmp_path / "out" / "preprocess.json").read_text(encoding="utf-8"))
    assert record["summary"] == summary and record["settings"]["mode"] == "spelling"
    assert record["settings"]["seed"] == 0 and record["settings"]["out_dir"] == str(tmp_path / "out")


KOSPEECH_RAW = "b/ (70%)/(칠십 퍼센트) 확률이라니 아/ (뭐+ 뭔)/(모+ 몬) 소리야 진짜 (100%)/(백 프로)가 왜 안돼? n/"


@pytest.mark.parametrize(
    "raw, mode, replace, expected",
    [
        (KOSPEECH_RAW, "phonetic", None, "칠십 퍼센트 확률이라니 아 모 몬 소리야 진짜 백 프로가 왜 안돼?"),
        (KOSPEECH_RAW, "spelling", None, "70% 확률이라니 아 뭐 뭔 소리야 진짜 100%가 왜 안돼?"),
        # brackets are toggles: no "/" needed between the two sides, an unclosed "(" drops the rest (phonetic)
        ("(3시)(세 시)에 만나", "phonetic", None, "세 시에 만나"),
        ("(3시)(세 시)에 만나", "spelling", None, "3시에 만나"),
        ("그 (문제가 많아서 말이야", "phonetic", None, "그"),
        ("그 (문제가 많아서 말이야", "spelling", None, "그 문제가 많아서 말이야"),
        ("그게) 문제야 (2)/(이)", "phonetic", None, "그게 문제야 이"),
        ("그게) 문제야 (2)/(이)", "spelling", None, "그게이"),
        ("((A)/(에이))/(에이) 등급", "phonetic", None, "A에이 등급"),
        ("((A)/(에이))/(에이) 등급", "spelling", None, "A 등급"),
        # noise letters o n u b l before "/" go wherever they stand; other letters only lose the "/"
        ("blob/ 먹었어 o/ 음/ 그래+ 그래* 사실", "phonetic", None, "blo 먹었어 음 그래 그래 사실"),
        ("N/ 대문자 노이즈, x/ 그리고 b/b/", "phonetic", None, "N 대문자 노이즈 x 그리고"),
        ("b/ n/ o/ l/ u/", "phonetic", None, ""),
        # digits, Latin letters, "." and "%" (spelling) stay; "%" takes the replace word (phonetic)
        ("MP3 파일 3.5기가 100% 다운", "spelling", None, "MP3 파일 3.5기가 100% 다운"),
        ("MP3 파일 3.5기가 100% 다운", "phonetic", "퍼센트", "MP3 파일 3.5기가 100퍼센트 다운"),
        ("할인 50%", "phonetic", "프로", "할인 50프로"),
        # "#" reads 샾 (sic); / + * - @ $ ^ & [ ] = : ; , are deleted; jamo, quotes, ~ _ | stay
        ("#태그 @아이디 $달러 ^ & [괄호] a=b 1:2 ; 끝", "spelling", None, "샾태그 아이디 달러 괄호 ab 12 끝"),
        ("ㅋㅋㅋ 웃겨~ \"진짜\" 'ok' _밑줄_ | 파이프", "phonetic", None, "ㅋㅋㅋ 웃겨~ \"진짜\" 'ok' _밑줄_ | 파이프"),
        # whitespace: ends stripped, runs of two or more become one space, a single tab or line break stays
        ("  앞뒤  공백   여러\t\t번 \n 줄바꿈\n끝  \n", "phonetic", None, "앞뒤 공백 여러 번 줄바꿈\n끝"),
        ("한\t탭 한\n줄", "phonetic", None, "한\t탭 한\n줄"),
        ("", "spelling", None, ""),
    ],
)
def test_sentence_filter_gives_kospeech_text(raw: str, mode: str, replace: Optional[str], expected: str) -> None:
    assert sentence_filter(raw, mode, replace) == expected
    assert sentence_filter(raw, mode, replace) == special_filter(bracket_filter(raw, mode), mode, replace)


def test_filter_steps_and_errors() -> None:
    assert bracket_filter("(뭐+ 뭔)/(모+ 몬) 소리야", "phonetic") == "모+ 몬 소리야"
    assert bracket_filter("(뭐+ 뭔)/(모+ 몬) 소리야", "spelling") == "뭐+ 뭔 소리야"
    assert special_filter("아/ 모+ 몬* n/ 소리야?") == "아 모 몬 소리야?"
    with pytest.raises(InputError, match="no reading in phonetic mode"):
        sentence_filter("이거 50% 맞아", "phonetic")
    assert sentence_filter("(50%)/(오십 퍼센트) 맞아", "phonetic") == "오십 퍼센트 맞아"  # the "%" side is dropped
    for bad in (bracket_filter, special_filter, sentence_filter):
        with pytest.raises(ValueError, match="mode must be one of"):
            bad("가", "both")


def test_percent_files() -> None:
    assert len(PERCENT_FILES) == 8
    assert percent_word("KsponSpeech_087797.txt") == "퍼센트"
    assert percent_word("KsponSpeech_501006.txt") == "프로"
    assert percent_word("KsponSpeech_000001.txt") is None
    assert percent_word("KsponSpeech_E00001.txt") is None


def test_read_kospeech_transcript_is_cp949_with_universal_newlines(tmp_path: Path) -> None:
    path = tmp_path / "KsponSpeech_000001.txt"
    path.write_bytes("첫 줄\r\n둘째\r셋째 \u212b\n".encode("cp949"))
    assert read_kospeech_transcript(path) == "첫 줄\n둘째\n셋째 \u212b\n"  # no NFC: U+212B stays
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TranscriptError, match="KsponSpeech_000001.txt: transcript is neither cp949 nor UTF-8"):
        read_kospeech_transcript(path)
    with pytest.raises(FileNotFoundError):
        read_kospeech_transcript(tmp_path / "absent.txt")


EVAL_TEXTS = {"eval_clean": ["만나자 #1", "에이 에스 됐어"], "eval_other": ["세 시 n/ 에이", "b/"]}


def _write_eval_sets(root: Path, texts: Dict[str, List[str]]) -> None:
    """AI Hub's evaluation layout: KsponSpeech_eval/<split>/KsponSpeech_E0000N.pcm only (one with the odd trailing byte
    some real files have), the transcripts in KsponSpeech_scripts/<split>.trn (UTF-8, "path :: text")."""
    scripts = root / "KsponSpeech_scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    number = 0
    for split, split_texts in texts.items():
        folder = root / "KsponSpeech_eval" / split
        folder.mkdir(parents=True)
        lines = []
        for text in split_texts:
            number += 1
            pcm = folder / f"KsponSpeech_E{number:05d}.pcm"
            pcm.write_bytes(np.ones(3200, dtype="<i2").tobytes() + b"\x00" * (number % 2))
            lines.append(f"{pcm.relative_to(root).as_posix()} :: {text}\n")
        (scripts / f"{split}.trn").write_text("".join(lines), encoding="utf-8")


def _write_kospeech_corpus(root: Path) -> None:
    """Two folders of the training layout, a percent file, a file with a bare "%", the evaluation sets."""
    _write_corpus(
        root,
        {
            "KsponSpeech_000001": "o/ (3시)/(세 시)에 만나자.\n",
            "KsponSpeech_000002": "b/ n/\n",
            "KsponSpeech_000003": "이거 10% 맞아\n",
            "KsponSpeech_087797": "이거 10% 맞아\n",
        },
    )
    folder = root / "KsponSpeech_02" / "KsponSpeech_0124"
    folder.mkdir(parents=True)
    (folder / "KsponSpeech_123001.txt").write_bytes("(A/S)/(에이 에스) 가 됐어?".encode("cp949"))
    (folder / "KsponSpeech_123001.pcm").write_bytes(np.ones(3200, dtype="<i2").tobytes())
    (folder / "KsponSpeech_123002.txt").write_bytes("어 네, 네".encode("cp949"))  # no audio: labels only
    _write_eval_sets(root, EVAL_TEXTS)


def test_preprocess_kospeech_rules_write_upstreams_label_files(tmp_path: Path) -> None:
    _write_kospeech_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    summary = preprocess_ksponspeech(tmp_path / "corpus", out, compat="kospeech", progress=False)
    assert (summary["utterances"], summary["skipped_empty_transcript"]) == (3, 1)
    assert (summary["skipped_percent_without_reading"], summary["skipped_missing_audio"]) == (1, 1)
    entries = read_manifest(out / "train.tsv")
    assert [e.transcript for e in entries] == ["세 시에 만나자.", "이거 10퍼센트 맞아", "에이 에스 가 됐어?"]
    # upstream's files: every decoded transcript (the empty one and the one without audio too), ids by frequency,
    # equal counts in falling code-point order, "txt" read "pcm" in the path
    assert (out / "aihub_labels.csv").read_text(encoding="utf-8") == (
        "id,char,freq\n0,<pad>,0\n1,<sos>,0\n2,<eos>,0\n3, ,9\n4,에,3\n5,이,2\n6,어,2\n7,네,2\n8,퍼,1\n9,트,1\n"
        "10,자,1\n11,아,1\n12,시,1\n13,스,1\n14,센,1\n15,세,1\n16,맞,1\n17,만,1\n18,됐,1\n19,나,1\n20,거,1\n"
        "21,가,1\n22,?,1\n23,1,1\n24,0,1\n25,.,1\n"
    )
    assert (out / "transcripts.txt").read_text(encoding="utf-8").splitlines() == [
        "KsponSpeech_01/KsponSpeech_0001/KsponSpeech_000001.pcm\t세 시에 만나자.\t15 3 12 4 3 17 19 10 25",
        "KsponSpeech_01/KsponSpeech_0001/KsponSpeech_000002.pcm\t\t",
        "KsponSpeech_01/KsponSpeech_0001/KsponSpeech_087797.pcm\t이거 10퍼센트 맞아\t5 20 3 23 24 8 14 9 3 16 11",
        "KsponSpeech_02/KsponSpeech_0124/KsponSpeech_123001.pcm\t에이 에스 가 됐어?\t4 5 3 4 13 3 21 3 18 6 22",
        "KsponSpeech_02/KsponSpeech_0124/KsponSpeech_123002.pcm\t어 네 네\t6 3 7 3 7",
    ]
    assert summary["kospeech_labels"] == str(out / "aihub_labels.csv")


def test_a_corpus_converted_to_utf8_gives_what_its_cp949_original_gives(tmp_path: Path) -> None:
    """Review, stop 36: under KoSpeech's rules a short UTF-8 transcript that also decodes as cp949 became mojibake
    (진짜 as 吏꾩쭨) in the manifest and the vocabulary, and the run succeeded; longer ones were skipped."""
    _write_kospeech_corpus(tmp_path / "cp949")
    short = tmp_path / "cp949" / "KsponSpeech_01" / "KsponSpeech_0001" / "KsponSpeech_000005"
    short.with_suffix(".txt").write_bytes("진짜".encode("cp949"))
    short.with_suffix(".pcm").write_bytes(np.ones(3200, dtype="<i2").tobytes())
    shutil.copytree(tmp_path / "cp949", tmp_path / "utf8")
    for path in (tmp_path / "utf8").rglob("*.txt"):
        path.write_text(path.read_bytes().decode("cp949"), encoding="utf-8", newline="")
    assert "진짜".encode().decode("cp949") != "진짜"  # the case: the UTF-8 bytes also decode as cp949, into mojibake
    summaries = {
        name: preprocess_ksponspeech(tmp_path / name, tmp_path / f"out-{name}", compat="kospeech", progress=False)
        for name in ("cp949", "utf8")
    }
    assert summaries["utf8"]["skipped_undecodable_transcript"] == 0
    assert summaries["utf8"]["utterances"] == summaries["cp949"]["utterances"] == 4
    for produced in ("train.tsv", "vocab.csv", "aihub_labels.csv", "transcripts.txt"):
        cp949, utf8 = ((tmp_path / f"out-{name}" / produced).read_text(encoding="utf-8") for name in summaries)
        assert utf8 == cp949.replace(str(tmp_path / "cp949"), str(tmp_path / "utf8")), produced
    assert "진짜" in (tmp_path / "out-utf8" / "train.tsv").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "raw, phonetic, spelling",
    [
        ("(3시)/(세 시", "세 시", "세 시"),  # the line's last pair lacks its closing bracket
        ("(아 (3시)/(세 시))/(아 세 시)", "아 세 시", "아 세 시"),  # nested: from the inside out
        ("（3시）/（세 시）에", "세 시에", "세 시에"),  # full-width brackets
        ("３시에 봐", "3시에 봐", "세 시에 봐"),  # a full-width digit was dropped
        ("(ＬＧ)/(엘지) 폰", "엘지 폰", "LG 폰"),  # full-width letters were dropped
        # brackets that are no pair keep their words (review of the first fix: the rest of the line was dropped)
        ("b/ (정말) 좋아", "정말 좋아", "정말 좋아"),
        ("아/ (그러니까) 내 말은", "아 그러니까 내 말은", "아 그러니까 내 말은"),
        ("(그 사람)/(그 싸람)이 왔(어", "그 싸람이 왔어", "그 사람이 왔어"),
        ("좋아 :( 진짜 싫어", "좋아 진짜 싫어", "좋아 진짜 싫어"),
    ],
)
def test_clean_rules_keep_one_side_of_a_malformed_or_full_width_dual_transcription(raw, phonetic, spelling) -> None:
    """Review, stop 36: both sides ran together (``3시세 시``: digits and a made-up syllable run in phonetic mode)."""
    assert clean_transcript(raw) == phonetic
    assert clean_transcript(raw, mode="spelling") == spelling


@pytest.mark.parametrize("compat", COMPAT_MODES)
def test_an_audio_extension_without_its_dot_is_refused_naming_the_option(tmp_path: Path, compat: str) -> None:
    """Review, stop 36: ``--audio-extension wav`` ended with "Invalid suffix 'wav'" or "no wav files under ..."."""
    _write_corpus(tmp_path / "corpus", {"KsponSpeech_000001": "만나자\n"})
    with pytest.raises(
        ValueError, match=r"--audio-extension\) must be a file suffix with its dot, e.g. '.wav', got 'wav'"
    ):
        preprocess_ksponspeech(tmp_path / "corpus", tmp_path / "out", compat=compat, audio_extension="wav")


def test_clean_rules_read_a_bare_percent_as_the_file_says_it(tmp_path: Path) -> None:
    """Review, stop 36: in the files where KoSpeech reads a bare % as 프로 (the speaker's word), the clean rules
    wrote 퍼센트."""
    root = tmp_path / "corpus"
    _write_corpus(root, {"KsponSpeech_501006": "그거 한 오십% 정도야\n", "KsponSpeech_087797": "한 오십% 정도야\n"})
    summary = preprocess_ksponspeech(root, tmp_path / "out", compat="clean", progress=False)
    assert summary["utterances"] == 2
    texts = [entry.transcript for entry in read_manifest(tmp_path / "out" / "train.tsv")]
    assert texts == ["한 오십 퍼센트 정도야", "그거 한 오십 프로 정도야"]
    assert clean_transcript("오십%", percent="프로") == "오십 프로" and clean_transcript("오십%") == "오십 퍼센트"


def test_preprocess_kospeech_grapheme_labels(tmp_path: Path) -> None:
    _write_kospeech_corpus(tmp_path / "corpus")
    out = tmp_path / "out"
    preprocess_ksponspeech(tmp_path / "corpus", out, unit="grapheme", compat="kospeech", progress=False)
    # NFKD jamo, "|" for a space; no cut to 2,000 rows
    assert (out / "aihub_labels.csv").read_text(encoding="utf-8") == (
        "id,grpm,freq\n0,<pad>,0\n1,<sos>,0\n2,<eos>,0\n3,|,9\n4,ᄋ,8\n5,ᅦ,7\n6,ᅡ,6\n7,ᅥ,4\n8,ᄉ,4\n9,ᅵ,3\n"
        "10,ᄂ,3\n11,ᆫ,2\n12,ᅳ,2\n13,ᄆ,2\n14,ᄀ,2\n15,ᆽ,1\n16,ᆻ,1\n17,ᅫ,1\n18,ᄑ,1\n19,ᄐ,1\n20,ᄌ,1\n21,ᄃ,1\n"
        "22,?,1\n23,1,1\n24,0,1\n25,.,1\n"
    )
    lines = (out / "transcripts.txt").read_text(encoding="utf-8").splitlines()
    assert (
        lines[0]
        == "KsponSpeech_01/KsponSpeech_0001/KsponSpeech_000001.pcm\t세 시에 만나자.\t8 5 3 8 9 4 5 3 13 6 11 10 6 20 6 25"
    )
    assert lines[3] == (
        "KsponSpeech_02/KsponSpeech_0124/KsponSpeech_123001.pcm\t에이 에스 가 됐어?\t4 5 4 9 3 4 5 8 12 3 14 6 3 21 17 16 4 7 22"
    )


def test_preprocess_eval_sets(tmp_path: Path) -> None:
    _write_kospeech_corpus(tmp_path / "corpus")
    summary = preprocess_ksponspeech(tmp_path / "corpus", tmp_path / "out", compat="kospeech", progress=False)
    vocab = Vocabulary.from_csv(summary["vocab"])
    results = preprocess_ksponspeech_eval(tmp_path / "corpus", tmp_path / "out", vocab, progress=False)
    clean = read_manifest(results["eval_clean"]["manifest"], vocab=vocab)
    # "#" reads 샾, which the training vocabulary lacks: removed from the reference, as KoSpeech's label ids drop it
    assert [e.transcript for e in clean] == ["만나자 1", "에이 에스 됐어"]
    assert [e.audio_path.name for e in clean] == ["KsponSpeech_E00001.pcm", "KsponSpeech_E00002.pcm"]
    assert results["eval_clean"]["dropped_characters"] == 1
    assert results["eval_clean"]["script"] == str(tmp_path / "corpus/KsponSpeech_scripts/eval_clean.trn")
    other = read_manifest(results["eval_other"]["manifest"], vocab=vocab)
    assert [e.transcript for e in other] == ["세 시 에이"]
    assert results["eval_other"]["skipped_empty_transcript"] == 1
    with pytest.raises(FileNotFoundError, match="eval_clean.trn"):
        preprocess_ksponspeech_eval(tmp_path / "corpus", tmp_path / "out", vocab, scripts_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="evaluation splits"):
        preprocess_ksponspeech_eval(tmp_path / "corpus", tmp_path / "out", vocab, splits=["dev"], progress=False)


@pytest.mark.parametrize(
    "line, expected",
    [
        (
            "KsponSpeech_eval/eval_clean/KsponSpeech_E00001.pcm :: 그 다음에 (3시)/(세 시)에 봐",
            ("KsponSpeech_eval/eval_clean/KsponSpeech_E00001.pcm", "그 다음에 (3시)/(세 시)에 봐"),
        ),
        # the first " :: " separates; the transcript is kept as written, spaces, markers and all
        ("a/b.pcm :: b/ 뭐 :: 그래  ", ("a/b.pcm", "b/ 뭐 :: 그래  ")),
        ("a/b.pcm :: ", ("a/b.pcm", "")),
    ],
)
def test_parse_trn_line(line: str, expected: Tuple[str, str]) -> None:
    assert parse_trn_line(line) == expected


@pytest.mark.parametrize(
    "line, message",
    [
        ("KsponSpeech_eval/eval_clean/KsponSpeech_E00001.pcm 그 다음에", "no ' :: '"),
        ("KsponSpeech_E00001.pcm::그 다음에", "no ' :: '"),
        ("   :: 그 다음에", "no audio path"),
        ("/data/KsponSpeech_eval/eval_clean/KsponSpeech_E00001.pcm :: 봐", "not relative to the corpus root"),
        ("../KsponSpeech_eval/eval_clean/KsponSpeech_E00001.pcm :: 봐", "not relative to the corpus root"),
    ],
)
def test_parse_trn_line_refuses(line: str, message: str) -> None:
    with pytest.raises(TranscriptError, match=message):
        parse_trn_line(line)


def test_read_trn_reports_bad_lines_with_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "eval_clean.trn"
    path.write_bytes(
        codecs.BOM_UTF8
        + "a/E1.pcm :: 첫째\r\n".encode()
        + b"\n"  # blank: ignored
        + "a/E2.pcm 둘째\n".encode()
        + b"a/E3.pcm :: \xff\xfe\n"
        + "a/E4.pcm :: 넷째 \u212b".encode()  # no final newline; no NFC (U+212B stays)
    )
    trn = read_trn(path)
    assert trn.lines == [(1, "a/E1.pcm", "첫째"), (5, "a/E4.pcm", "넷째 \u212b")]
    assert [number for number, _ in trn.malformed] == [3] and "no ' :: '" in trn.malformed[0][1]
    assert [number for number, _ in trn.undecodable] == [4] and "not UTF-8" in trn.undecodable[0][1]
    with pytest.raises(FileNotFoundError, match="absent.trn"):
        read_trn(tmp_path / "absent.trn")


def test_read_trn_refuses_a_cp949_file(tmp_path: Path) -> None:
    path = tmp_path / "eval_other.trn"
    path.write_bytes("a/E1.pcm :: b/\na/E2.pcm :: 그 다음에 봐\n".encode("cp949"))
    with pytest.raises(TranscriptError, match=r"eval_other.trn:2: not UTF-8 text \(its bytes read as cp949\).*iconv"):
        read_trn(path)


def test_eval_references_keep_no_space_a_removed_character_leaves(tmp_path: Path) -> None:
    """Review, stop 36: a character outside the training vocabulary was removed with the spaces around it kept, so
    references held edge and doubled spaces and their label ids disagreed with the stripped transcript on reading."""
    root = tmp_path / "corpus"
    _write_corpus(root, {"KsponSpeech_000001": "만나자 에이\n"})
    _write_eval_sets(root, {"eval_clean": ["# 만나자 # 에이 #"]})
    summary = preprocess_ksponspeech(root, tmp_path / "out", compat="kospeech", progress=False)
    vocab = Vocabulary.from_csv(summary["vocab"])
    results = preprocess_ksponspeech_eval(root, tmp_path / "out", vocab, splits=["eval_clean"], progress=False)
    assert results["eval_clean"]["dropped_characters"] == 3
    (entry,) = read_manifest(results["eval_clean"]["manifest"], vocab=vocab, relabel=False)
    assert entry.transcript == "만나자 에이" and list(entry.label_ids) == vocab.encode("만나자 에이")


def test_eval_sets_skip_count_and_log_bad_lines(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "corpus"
    _write_kospeech_corpus(root)
    vocab = Vocabulary.from_csv(
        preprocess_ksponspeech(root, tmp_path / "out", compat="kospeech", progress=False)["vocab"]
    )
    script = root / "KsponSpeech_scripts" / "eval_clean.trn"
    good = script.read_bytes()
    empty = root / "KsponSpeech_eval/eval_clean/KsponSpeech_E00009.pcm"
    empty.write_bytes(b"")
    script.write_bytes(
        good
        + "KsponSpeech_eval/eval_clean/KsponSpeech_E00001.pcm 만나자\n".encode()  # 3: no separator
        + b"KsponSpeech_eval/eval_clean/KsponSpeech_E00001.pcm :: \xed\xa0\x80\n"  # 4: undecodable
        + "KsponSpeech_eval/eval_clean/KsponSpeech_E00404.pcm :: 만나자\n".encode()  # 5: no pcm
        + "KsponSpeech_eval/eval_clean/KsponSpeech_E00001.pcm :: 이거 10% 맞아\n".encode()  # 6: "%" without reading
        + "KsponSpeech_eval/eval_clean/KsponSpeech_E00009.pcm :: 만나자\n".encode()  # 7: empty audio
    )
    with caplog.at_level(logging.INFO, logger="kospeech.data.ksponspeech"):
        results = preprocess_ksponspeech_eval(root, tmp_path / "out", vocab, splits=["eval_clean"], progress=False)
    summary = results["eval_clean"]
    assert summary["utterances"] == 2 and set(results) == {"eval_clean"}
    assert (summary["skipped_malformed_line"], summary["skipped_undecodable_transcript"]) == (1, 1)
    assert (summary["skipped_missing_audio"], summary["skipped_percent_without_reading"]) == (1, 1)
    assert (summary["skipped_empty_audio"], summary["skipped_bad_audio"], summary["skipped_empty_transcript"]) == (
        1,
        0,
        0,
    )
    logged = caplog.text
    for number in (3, 4, 6):
        assert f"skipping {script}:{number}: " in logged
    assert f"skipping {script}:5 ({empty.with_name('KsponSpeech_E00404.pcm')}): no audio file" in logged
    assert f"skipping {script}:7 ({empty}): empty audio file" in logged
    # a split none of whose lines is usable is an error, not an empty manifest
    script.write_text("KsponSpeech_eval/eval_clean/KsponSpeech_E00404.pcm :: 만나자\n", encoding="utf-8")
    with pytest.raises(InputError, match="no utterance of .*eval_clean.trn"):
        preprocess_ksponspeech_eval(root, tmp_path / "out", vocab, splits=["eval_clean"], progress=False)


def test_eval_sets_clean_rules_and_converted_audio(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    _write_kospeech_corpus(root)
    summary = preprocess_ksponspeech(root, tmp_path / "out", compat="clean", progress=False)
    vocab = Vocabulary.from_csv(summary["vocab"])
    for pcm in (root / "KsponSpeech_eval").rglob("*.pcm"):  # a copy converted to WAV keeps the tree
        sf.write(pcm.with_suffix(".wav"), np.zeros(1600, dtype=np.float32), 16000)
        pcm.unlink()
    results = preprocess_ksponspeech_eval(
        root, tmp_path / "out", vocab, compat="clean", audio_extension=".wav", progress=False
    )
    clean = read_manifest(results["eval_clean"]["manifest"], vocab=vocab)
    # clean rules: "#" reads 샵, which the training vocabulary lacks
    assert [e.transcript.split() for e in clean] == [["만나자", "1"], ["에이", "에스", "됐어"]]
    assert all(e.audio_path.suffix == ".wav" for e in clean)


def test_cli_compat_modes_and_eval_sets(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _write_kospeech_corpus(tmp_path / "corpus")
    cli.main([str(tmp_path / "corpus"), str(tmp_path / "kospeech"), "--no-progress"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["compat"] == "kospeech" and Path(summary["kospeech_labels"]).is_file()
    assert summary["eval"]["eval_clean"]["utterances"] == 2  # KsponSpeech_scripts/eval_clean.trn, no --scripts-dir
    cli.main([str(tmp_path / "corpus"), str(tmp_path / "clean"), "--compat", "clean", "--no-progress"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["compat"] == "clean" and summary["kospeech_labels"] is None
    # today's rules: punctuation dropped, "%" read out, and the eval files are not training data
    transcripts = [e.transcript for e in read_manifest(summary["train_manifest"])]
    assert transcripts == ["세 시에 만나자", "이거 10 퍼센트 맞아", "이거 10 퍼센트 맞아", "에이 에스 가 됐어"]
    with pytest.raises(SystemExit, match="^error: keep_punctuation applies to compat='clean' only"):
        cli.main([str(tmp_path / "corpus"), str(tmp_path / "bad"), "--keep-punctuation", "--no-progress"])


def test_cli_scripts_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _write_kospeech_corpus(tmp_path / "corpus")
    scripts = tmp_path / "corpus" / "KsponSpeech_scripts"
    moved = tmp_path / "scripts"
    scripts.rename(moved)
    (moved / "eval_other.trn").unlink()
    # no script folder under the root: training only
    cli.main([str(tmp_path / "corpus"), str(tmp_path / "a"), "--no-progress"])
    assert "eval" not in json.loads(capsys.readouterr().out)
    # a folder given: the sets whose file it holds, the other one logged
    cli.main([str(tmp_path / "corpus"), str(tmp_path / "b"), "--scripts-dir", str(moved), "--no-progress"])
    printed = capsys.readouterr()  # the CLI logs to stderr
    assert set(json.loads(printed.out)["eval"]) == {"eval_clean"}
    assert f"no eval_other.trn in {moved}: eval_other.tsv is not written" in printed.err
    with pytest.raises(SystemExit, match="^error: --scripts-dir .* holds none of"):
        cli.main([str(tmp_path / "corpus"), str(tmp_path / "c"), "--scripts-dir", str(tmp_path), "--no-progress"])
    assert not (tmp_path / "c").exists()  # refused before any work
    # the same folder again without the scripts: the earlier run's eval_clean.tsv is not left to pass for this one's
    assert (tmp_path / "b" / "eval_clean.tsv").exists()
    cli.main([str(tmp_path / "corpus"), str(tmp_path / "b"), "--no-progress"])
    assert not (tmp_path / "b" / "eval_clean.tsv").exists()
