"""Text inputs read by one reader (round 2): lone CR, BOMs and encodings in user maps, NFD paths and references,
paths kept as written, bounded label ids, user maps that match nothing, escaped file names, undecodable KsponSpeech
transcripts."""

import codecs
import logging
import unicodedata

import pytest
from conftest import TOKENS, tone

from kospeech.cli import transcribe as transcribe_cli
from kospeech.cli.transcribe import escape_field
from kospeech.data.audio import save_audio
from kospeech.data.ksponspeech import preprocess_ksponspeech
from kospeech.data.manifest import MAX_LABEL_ID, ManifestError, read_manifest
from kospeech.errors import InputError
from kospeech.inference.files import read_user_map, users_for_files
from kospeech.text_files import decode_text, read_lines
from kospeech.vocabs import Vocabulary

VOCAB = Vocabulary(TOKENS)


def _ids(text):
    return " ".join(map(str, VOCAB.encode(text)))


@pytest.fixture
def root(tmp_path):
    for name in ("a", "b", "c"):
        save_audio(tmp_path / "wav" / f"{name}.wav", tone(0.3, seed=len(name)), 16000)
    return tmp_path


def test_a_lone_cr_inside_a_line_neither_splits_it_nor_moves_error_line_numbers(root):
    path = root / "cr.tsv"
    path.write_bytes(f"wav/a.wav\t가나\t{_ids('가나')}\nwav/b.wav\t가\r나\t\nwav/c.wav\t힣\t\n".encode())
    assert [number for number, _ in read_lines(path)] == [1, 2, 3]
    with pytest.raises(ManifestError, match=r"cr\.tsv:2: .*U\+000D"):
        read_manifest(path, VOCAB)
    path.write_bytes("wav/a.wav\t가나\t5 6\nwav/b.wav\t가\r나\t5 6\n".encode())
    entries = read_manifest(path)
    assert len(entries) == 2 and entries[1].transcript == "가\r나"


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(lambda text: codecs.BOM_UTF8 + text.encode("utf-8"), id="bom"),
        pytest.param(lambda text: text.replace("\n", "\r\n").encode("utf-8"), id="crlf"),
        pytest.param(lambda text: codecs.BOM_UTF8 + text.replace("\n", "\r\n").encode("utf-8"), id="bom-crlf"),
        pytest.param(lambda text: unicodedata.normalize("NFD", text).encode("utf-8"), id="nfd"),
    ],
)
def test_user_maps_keep_every_entry_whatever_the_bom_line_ends_or_normalization(root, encode):
    (root / "녹음").mkdir()
    save_audio(root / "녹음" / "첫째.wav", tone(0.3), 16000)
    text = "wav/a.wav\talice\nwav/b.wav\tbob\n녹음/첫째.wav\tcarol\n"
    path = root / "users.tsv"
    path.write_bytes(encode(text))
    mapping = read_user_map(path)
    assert mapping == {
        (root / "wav" / "a.wav").resolve(): "alice",
        (root / "wav" / "b.wav").resolve(): "bob",
        (root / "녹음" / "첫째.wav").resolve(): "carol",
    }


@pytest.mark.parametrize("encoding", ["cp949", "utf-16"])
def test_a_user_map_in_another_encoding_names_the_file_and_line(root, encoding):
    path = root / "users.tsv"
    path.write_bytes("wav/a.wav\t사용자\n".encode(encoding))
    with pytest.raises(InputError, match=r"users\.tsv:1: not UTF-8 text.*iconv"):
        read_user_map(path)


@pytest.mark.parametrize(
    ("raw", "line", "offset"),
    [
        (codecs.BOM_UTF8 + b"ab\xffcd", 1, 5),
        (b"ab\xffcd", 1, 2),
        (codecs.BOM_UTF8 + b"a\nb\xff", 2, 6),
    ],
    ids=["bom", "no-bom", "bom-second-line"],
)
def test_a_decoding_error_names_the_offset_of_the_bad_byte_in_the_file_a_bom_included(raw, line, offset):
    # review: the offset was counted after the stripped BOM ("at byte 2" for byte 5)
    with pytest.raises(InputError, match=rf"^f\.tsv:{line}: not UTF-8 text: invalid start byte at byte {offset};"):
        decode_text(raw, "f.tsv")


def test_nfd_audio_paths_in_a_manifest_find_the_nfc_file(root):
    audio = save_audio(root / "한국어" / "음성.wav", tone(0.3), 16000)
    path = root / "nfd.tsv"
    path.write_bytes(unicodedata.normalize("NFD", f"한국어/음성.wav\t가나\t{_ids('가나')}\n").encode("utf-8"))
    assert read_manifest(path, VOCAB)[0].audio_path == audio


def test_audio_paths_keep_their_leading_and_trailing_spaces(root):
    audio = save_audio(root / "wav" / " spaced .wav", tone(0.3), 16000)
    path = root / "spaces.tsv"
    path.write_text(f"wav/ spaced .wav\t가나\t{_ids('가나')}\n", encoding="utf-8")
    assert read_manifest(path, VOCAB)[0].audio_path == audio
    path.write_text(f"wav/a.wav \t가나\t{_ids('가나')}\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"spaces\.tsv:1: audio file not found: .*a\.wav $"):
        read_manifest(path, VOCAB)


@pytest.mark.parametrize("ids", [str(10**30), str(MAX_LABEL_ID + 1), "-1", "5 -7"])
def test_label_ids_beyond_the_id_range_are_refused_without_a_vocabulary(root, ids):
    path = root / "ids.tsv"
    path.write_text(f"wav/a.wav\t가나\t{ids}\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"ids\.tsv:1: .*label id"):
        read_manifest(path)


def test_the_largest_label_id_is_accepted_without_a_vocabulary(root):
    path = root / "ids.tsv"
    path.write_text(f"wav/a.wav\t가나\t5 {MAX_LABEL_ID}\n", encoding="utf-8")
    assert read_manifest(path)[0].label_ids == (5, MAX_LABEL_ID)


def test_user_map_entries_that_match_no_input_are_reported(root, caplog):
    path = root / "users.tsv"
    path.write_text("wav/a.wav\talice\nwav/elsewhere.wav\tbob\n", encoding="utf-8")
    files = [root / "wav" / "a.wav", root / "wav" / "b.wav"]
    with caplog.at_level(logging.WARNING):
        users = users_for_files(files, read_user_map(path), "carol")
    assert users == ["alice", "carol"]
    assert "1 user-map entries match no input file" in caplog.text and "elsewhere.wav" in caplog.text


def test_a_user_map_without_an_adapter_dir_is_a_usage_error(root, world, capsys):
    path = root / "users.tsv"
    path.write_text("wav/a.wav\talice\n", encoding="utf-8")
    status = transcribe_cli.main([str(root / "wav"), "--checkpoint", str(world.checkpoint), "--user-map", str(path)])
    assert status == 2
    assert "--user-map names users' adapters; it needs --adapter-dir" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "escaped"),
    [("a\tb.wav", "a\\tb.wav"), ("a\nb.wav", "a\\nb.wav"), ("a\rb.wav", "a\\rb.wav"), ("a\\b.wav", "a\\\\b.wav")],
    ids=["tab", "newline", "cr", "backslash"],
)
def test_text_output_escapes_file_names_that_would_break_its_lines(tmp_path, world, capsys, name, escaped):
    assert escape_field(name) == escaped
    audio = save_audio(tmp_path / "in" / name, tone(0.5), 16000)
    status = transcribe_cli.main([str(audio), "--checkpoint", str(world.checkpoint), "--format", "text"])
    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(escape_field(str(audio)) + "\t")


def test_ksponspeech_preprocessing_skips_and_counts_undecodable_transcripts(tmp_path):
    root = tmp_path / "KsponSpeech_01" / "KsponSpeech_0001"
    root.mkdir(parents=True)
    for index, raw in enumerate([b"\xb0\xa1\xb3\xaa", "가나".encode(), b"\xff\xfe\x00\xd8\xff", b"\xc3\x28"]):
        stem = root / f"KsponSpeech_{index:06d}"
        (stem.with_suffix(".pcm")).write_bytes((tone(0.5, seed=index) * 2**14).astype("<i2").tobytes())
        (stem.with_suffix(".txt")).write_bytes(raw)
    summary = preprocess_ksponspeech(tmp_path, tmp_path / "out", compat="clean", progress=False)
    assert summary["utterances"] == 2  # the cp949 and the UTF-8 transcript
    assert summary["skipped_undecodable_transcript"] == 2
