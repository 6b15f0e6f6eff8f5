"""Bad text: manifests, vocabularies and transcripts fail naming ``file:line`` and the problem, or are read right."""

import codecs
import unicodedata

import pytest
from conftest import TOKENS, make_training_set

from kospeech.data.features import FeatureConfig
from kospeech.data.ksponspeech import TranscriptError, read_transcript
from kospeech.data.manifest import ManifestEntry, ManifestError, read_manifest, write_manifest
from kospeech.trainer import SupervisedTrainer, TrainConfig
from kospeech.vocabs import UnknownCharacterError, Vocabulary

VOCAB = Vocabulary(TOKENS)


@pytest.fixture
def root(tmp_path):
    (tmp_path / "wav").mkdir()
    for name in ("a", "b", "c"):
        (tmp_path / "wav" / f"{name}.wav").write_bytes(b"RIFF")  # only existence is checked by read_manifest
    return tmp_path


def _ids(text: str) -> str:
    return " ".join(map(str, VOCAB.encode(text)))


GOOD = f"wav/a.wav\t가나 다\t{_ids('가나 다')}"


@pytest.mark.parametrize(
    "line, problem",
    [
        pytest.param("wav/b.wav", "expected 3 tab-separated columns .* found 1", id="one-column"),
        pytest.param(f"wav/b.wav\t가\t{_ids('가')}\tspk\textra", "found 5", id="five-columns"),
        pytest.param("wav/b.wav 가 5", "found 1", id="spaces-not-tabs"),
        pytest.param(f"\t가\t{_ids('가')}", "empty audio path", id="empty-path"),
        pytest.param(f"wav/missing.wav\t가\t{_ids('가')}", r"audio file not found: .*/missing\.wav", id="no-audio"),
        pytest.param(f"wav\\b.wav\t가\t{_ids('가')}", r"audio file not found: .*wav\\b\.wav", id="backslash-path"),
        pytest.param("wav/b.wav\t가 힣\t", r"character '힣' \(U\+D7A3\) at position 2", id="out-of-vocab-char"),
        pytest.param("wav/b.wav\tabc\t", r"character 'a' \(U\+0061\)", id="latin-char"),
        pytest.param("wav/b.wav\t\t5", "empty transcript", id="empty-transcript"),
        pytest.param("wav/b.wav\t   \t5", "empty transcript", id="blank-transcript"),
        pytest.param(
            "wav/b.wav\t가나\t5 7", r"label ids '5 7' disagree with the transcript '가나' .*'5 6'", id="ids-disagree"
        ),
        pytest.param("wav/b.wav\t가나\t5", "disagree", id="ids-too-few"),
        pytest.param("wav/b.wav\t가나\t5 6 3", "disagree", id="ids-with-blank"),
        pytest.param("wav/b.wav\t가나\t5 x", "must be space-separated integers", id="ids-not-integers"),
        pytest.param("wav/b.wav\t가나\t5.0 6.0", "must be space-separated integers", id="ids-floats"),
    ],
)
def test_bad_manifest_lines_name_file_line_and_problem(root, line, problem):
    path = root / "bad.tsv"
    path.write_text(GOOD + "\n\n" + line + "\n", encoding="utf-8")  # the blank line 2 still counts
    with pytest.raises(ManifestError, match=problem) as info:
        read_manifest(path, VOCAB, relabel=False)  # strict: ids must be this vocabulary's (default: re-encoded)
    assert str(info.value).startswith(f"{path}:3: ")


def test_ids_without_a_vocabulary_are_required_and_taken_as_given(root):
    path = root / "m.tsv"
    path.write_text("wav/a.wav\t가나\t\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"m\.tsv:1: no label ids"):
        read_manifest(path)
    path.write_text("wav/a.wav\t가나\t5 6\n", encoding="utf-8")
    assert read_manifest(path)[0].label_ids == (5, 6)


def test_empty_ids_column_is_filled_from_the_vocabulary(root):
    path = root / "m.tsv"
    path.write_text("wav/a.wav\t가나 다\t\n", encoding="utf-8")
    assert read_manifest(path, VOCAB)[0].label_ids == tuple(VOCAB.encode("가나 다"))


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda text: text.encode("utf-8"), id="utf8-lf"),
        pytest.param(lambda text: text.replace("\n", "\r\n").encode("utf-8"), id="crlf"),
        pytest.param(lambda text: codecs.BOM_UTF8 + text.encode("utf-8"), id="bom"),
        pytest.param(lambda text: codecs.BOM_UTF8 + text.replace("\n", "\r\n").encode("utf-8"), id="bom-crlf"),
        pytest.param(lambda text: text.rstrip("\n").encode("utf-8"), id="no-final-newline"),
        pytest.param(lambda text: text.replace("\n", "\n\n").encode("utf-8"), id="blank-lines"),
    ],
)
def test_line_ends_and_bom_give_the_same_entries(root, encode):
    text = f"{GOOD}\nwav/b.wav\t라마\t{_ids('라마')}\tspk1\nwav/c.wav\t바\t{_ids('바')}\n"
    reference = root / "ref.tsv"
    reference.write_bytes(text.encode("utf-8"))
    path = root / "variant.tsv"
    path.write_bytes(encode(text))
    entries = read_manifest(path, VOCAB)
    assert entries == read_manifest(reference, VOCAB)
    assert [entry.audio_path for entry in entries] == [root / "wav" / f"{name}.wav" for name in "abc"]
    assert entries[1].speaker == "spk1" and entries[1].transcript == "라마"


def test_crlf_error_line_numbers_are_right(root):
    path = root / "crlf.tsv"
    path.write_bytes(f"{GOOD}\r\n{GOOD}\r\nwav/b.wav\t힣\t\r\n".encode())
    with pytest.raises(ManifestError, match=r"crlf\.tsv:3: .*'힣'"):
        read_manifest(path, VOCAB)


@pytest.mark.parametrize("encoding", ["cp949", "euc-kr", "utf-16"])
def test_non_utf8_manifests_are_refused_with_a_hint(root, encoding):
    path = root / f"{encoding}.tsv"
    path.write_bytes(f"{GOOD}\n".encode(encoding))
    with pytest.raises(ManifestError, match=rf"{encoding}\.tsv:1: not UTF-8 text.* convert it \(e\.g\. from cp949"):
        read_manifest(path, VOCAB)


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1e"])
def test_unicode_line_separators_inside_a_transcript_do_not_split_the_line(root, separator):
    """Only ``\\n`` ends a manifest line; an odd separator in a transcript is an unknown character of that line."""
    path = root / "sep.tsv"
    path.write_text(f"{GOOD}\nwav/b.wav\t가{separator}나\t\n{GOOD}\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=rf"sep\.tsv:2: .*U\+{ord(separator):04X}"):
        read_manifest(path, VOCAB)
    path.write_text(f"{GOOD}\nwav/b.wav\t가{separator}나\t5 6\n{GOOD}\n", encoding="utf-8")
    entries = read_manifest(path)
    assert len(entries) == 3 and entries[1].transcript == f"가{separator}나"


def test_nfd_transcripts_encode_like_nfc(root):
    """Decomposed Hangul (macOS file names, some editors) maps to the same syllable ids."""
    path = root / "nfd.tsv"
    decomposed = unicodedata.normalize("NFD", "가나 다")
    path.write_text(f"wav/a.wav\t{decomposed}\t{_ids('가나 다')}\n", encoding="utf-8")
    assert read_manifest(path, VOCAB)[0].label_ids == tuple(VOCAB.encode("가나 다"))


def test_unicode_and_spaces_in_audio_paths(root):
    audio = root / "녹음 파일" / "첫 번째.wav"
    audio.parent.mkdir()
    audio.write_bytes(b"RIFF")
    written = write_manifest(root / "m.tsv", [ManifestEntry(audio, "가나", tuple(VOCAB.encode("가나")))])
    assert written.read_text(encoding="utf-8").startswith("녹음 파일/첫 번째.wav\t")
    assert read_manifest(written, VOCAB)[0].audio_path == audio


@pytest.mark.parametrize("bad", ["가\t나", "가\n나", "가\r나"])
def test_writing_a_transcript_with_tabs_or_newlines_is_refused(root, bad):
    entry = ManifestEntry(root / "wav" / "a.wav", bad, (5,))
    with pytest.raises(ManifestError, match="contains a tab or newline"):
        write_manifest(root / "out.tsv", [entry])
    assert not (root / "out.tsv").exists()


def test_empty_manifest_gives_no_entries_and_the_trainer_refuses_it(root):
    path = root / "empty.tsv"
    path.write_text("\n\n", encoding="utf-8")
    assert read_manifest(path, VOCAB) == []
    with pytest.raises(ValueError, match="no training utterances"):
        SupervisedTrainer(TrainConfig(output_dir=str(root / "run")), VOCAB, FeatureConfig(), read_manifest(path))


def test_missing_manifest_names_it(root):
    with pytest.raises(FileNotFoundError, match=r"manifest not found: .*nope\.tsv"):
        read_manifest(root / "nope.tsv")


# ---------------------------------------------------------------------------------------------------- vocabularies


@pytest.mark.parametrize(
    "content, problem",
    [
        pytest.param("char,freq\n<pad>,0\n", "expected a header 'id,char,freq'", id="no-id-column"),
        pytest.param("", "expected a header", id="empty-file"),
        pytest.param("id,char,freq\n0,<pad>,0\n2,<sos>,0\n", r":3: id 2 out of order, expected 1", id="id-gap"),
        pytest.param("id,char,freq\nzero,<pad>,0\n", r":2: bad id or freq", id="id-not-int"),
        pytest.param("id,char,freq\n0,<pad>,many\n", r":2: bad id or freq", id="freq-not-int"),
        pytest.param("id,char,freq\n0,,0\n", r":2: empty token", id="empty-token"),
        pytest.param("id,char,freq\n0,<pad>,0\n1,<sos>,0\n2,<eos>,0\n", "must start with", id="no-blank"),
        pytest.param(
            "id,char,freq\n0,<pad>,0\n1,<sos>,0\n2,<eos>,0\n3,<blank>,0\n4,가,1\n5,가,1\n",
            r"duplicate tokens .*'가'",
            id="duplicate-token",
        ),
    ],
)
def test_bad_vocabulary_csv_names_the_file(tmp_path, content, problem):
    path = tmp_path / "vocab.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=problem) as info:
        Vocabulary.from_csv(path)
    assert str(path) in str(info.value)


def test_vocabulary_csv_with_bom_crlf_and_quoted_tokens_round_trips(tmp_path):
    vocab = Vocabulary(TOKENS + [",", '"', "'"])
    path = vocab.to_csv(tmp_path / "vocab.csv")
    variant = tmp_path / "variant.csv"
    variant.write_bytes(codecs.BOM_UTF8 + path.read_bytes().replace(b"\n", b"\r\n"))
    assert Vocabulary.from_csv(variant) == vocab
    assert Vocabulary.from_csv(variant).fingerprint() == vocab.fingerprint()


def test_cp949_vocabulary_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "vocab.csv"
    rows = ["id,char,freq"] + [f"{index},{token},0" for index, token in enumerate(TOKENS)]
    path.write_bytes("\n".join(rows).encode("cp949"))
    with pytest.raises(ValueError, match=r"vocab\.csv:\d+: not UTF-8 text"):
        Vocabulary.from_csv(path)


def test_unknown_character_error_names_where_and_what():
    with pytest.raises(UnknownCharacterError, match=r"train\.tsv:12: character '!' \(U\+0021\) at position 2"):
        VOCAB.encode("가나!", where="train.tsv:12")


# ---------------------------------------------------------------------------------------------------- transcripts


def test_ksponspeech_transcripts_in_cp949_and_utf8_read_the_same(tmp_path):
    text = "o/ 그래서 (3시)/(세 시)에 만나자 b/"
    for encoding, prefix in (("cp949", b""), ("utf-8", b""), ("utf-8", codecs.BOM_UTF8)):
        path = tmp_path / f"{encoding}{len(prefix)}.txt"
        path.write_bytes(prefix + (text + "\r\n").encode(encoding))
        assert read_transcript(path) == text


def test_ksponspeech_transcript_in_neither_encoding_is_refused(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"\xff\xfe\xfa\xfb\x80\x81")
    with pytest.raises(TranscriptError, match=r"bad\.txt: transcript is neither cp949 nor UTF-8"):
        read_transcript(path)


def test_a_training_set_written_by_the_library_reads_back(tmp_path):
    paths = make_training_set(tmp_path, count=3)
    vocab = Vocabulary.from_csv(paths["vocab"])
    entries = read_manifest(paths["manifest"], vocab)
    assert len(entries) == 3 and all(entry.audio_path.is_file() for entry in entries)


@pytest.mark.parametrize("name", ["a\tb.wav", "c\nd.wav"])
def test_writing_an_audio_path_with_a_tab_or_newline_is_refused(root, name):
    """Review, stop 34: the path was written as is, and the manifest could not be read back."""
    entry = ManifestEntry(root / "wav" / name, "가나", tuple(VOCAB.encode("가나")))
    with pytest.raises(ManifestError, match=r"entry 0: audio path .* contains a tab or newline"):
        write_manifest(root / "out.tsv", [entry])
    assert not (root / "out.tsv").exists()
