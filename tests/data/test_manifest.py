import pytest

from kospeech.data.manifest import ManifestEntry, ManifestError, read_manifest, write_manifest
from kospeech.vocabs import Vocabulary


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "wavs").mkdir()
    for name in ("a", "b"):
        (tmp_path / "wavs" / f"{name}.wav").write_bytes(b"RIFF")
    vocab = Vocabulary.build(["불 꺼 줘", "세 시"])
    return tmp_path, vocab


def test_write_then_read_round_trip(corpus):
    root, vocab = corpus
    entries = [
        ManifestEntry(root / "wavs" / "a.wav", "불 꺼 줘", tuple(vocab.encode("불 꺼 줘")), "spk1"),
        ManifestEntry(root / "wavs" / "b.wav", "세 시", tuple(vocab.encode("세 시"))),
    ]
    path = write_manifest(root / "train.tsv", entries)
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith("wavs/a.wav\t불 꺼 줘\t")
    assert read_manifest(path, vocab) == entries


def test_a_manifest_named_by_a_relative_path_gives_absolute_audio_paths(corpus, monkeypatch):
    """Review, stop 37: read by a relative path, the entries' audio paths were relative to the working folder; a
    subset written to another folder then named files that do not exist."""
    root, vocab = corpus
    write_manifest(root / "train.tsv", [ManifestEntry(root / "wavs" / "a.wav", "세 시", tuple(vocab.encode("세 시")))])
    monkeypatch.chdir(root)
    (entry,) = read_manifest("train.tsv", vocab)
    assert entry.audio_path == root / "wavs" / "a.wav"
    subset = write_manifest("subset/train.tsv", [entry])
    assert read_manifest(subset, vocab) == [entry]


def test_crlf_and_bom_are_accepted(corpus):
    root, vocab = corpus
    ids = " ".join(map(str, vocab.encode("세 시")))
    (root / "m.tsv").write_bytes(("\ufeffwavs/a.wav\t세 시\t" + ids + "\r\n").encode("utf-8"))
    (entry,) = read_manifest(root / "m.tsv", vocab)
    assert entry.transcript == "세 시"
    assert entry.audio_path == root / "wavs" / "a.wav"


@pytest.mark.parametrize(
    "line, message",
    [
        ("wavs/a.wav", "expected 3 tab-separated columns"),
        ("wavs/a.wav\t\t5", "empty transcript"),
        ("wavs/missing.wav\t세 시\t", "audio file not found"),
        ("wavs/a.wav\t세 시\tx y", "must be space-separated integers"),
        ("wavs/a.wav\t세 시\t4 4 4", "disagree with the transcript"),
        ("wavs/a.wav\t세 힣\t", "'힣'"),
    ],
)
def test_bad_lines_name_file_and_line(corpus, line, message):
    root, vocab = corpus
    (root / "bad.tsv").write_text("wavs/b.wav\t세 시\t\n" + line + "\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=message) as info:
        read_manifest(root / "bad.tsv", vocab, relabel=False)
    assert f"{root / 'bad.tsv'}:2" in str(info.value)


def test_cp949_manifest_is_refused_with_hint(corpus):
    root, _ = corpus
    (root / "m.tsv").write_bytes("wavs/a.wav\t세 시\t5 6\n".encode("cp949"))
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_manifest(root / "m.tsv")


def test_relabel_encodes_transcripts_with_another_unit(corpus):
    root, vocab = corpus
    ids = " ".join(map(str, vocab.encode("세 시")))
    (root / "m.tsv").write_text(f"wavs/a.wav\t세 시\t{ids}\n", encoding="utf-8")
    graphemes = Vocabulary.build(["불 꺼 줘", "세 시"], unit="grapheme")
    with pytest.raises(ManifestError, match="disagree"):
        read_manifest(root / "m.tsv", graphemes, relabel=False)
    (entry,) = read_manifest(root / "m.tsv", graphemes, relabel=True)
    assert entry.label_ids == tuple(graphemes.encode("세 시"))
    assert graphemes.decode(entry.label_ids) == "세 시"


def test_a_checkpoints_vocabulary_re_encodes_ids_of_another_unit_with_one_warning(corpus, caplog):
    root, vocab = corpus
    ids = " ".join(map(str, vocab.encode("세 시")))
    (root / "m.tsv").write_text(f"wavs/a.wav\t세 시\t{ids}\nwavs/b.wav\t세 시\t{ids}\n", encoding="utf-8")
    graphemes = Vocabulary.build(["불 꺼 줘", "세 시"], unit="grapheme")
    with caplog.at_level("WARNING"):
        entries = read_manifest(root / "m.tsv", graphemes)
    assert [entry.label_ids for entry in entries] == [tuple(graphemes.encode("세 시"))] * 2
    assert caplog.text.count("written for another vocabulary") == 1 and "2 of 2 lines" in caplog.text
    caplog.clear()
    assert read_manifest(root / "m.tsv", vocab) and "another vocabulary" not in caplog.text
