"""bin/inference.py (files, directories, user maps, text/jsonl, errors) and per-user CER/WER evaluation."""

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import unicodedata
from pathlib import Path

import pytest
from inference_world import TOKENS

from kospeech.data.manifest import ManifestEntry, write_manifest
from kospeech.errors import ConfigError, UnknownUserError
from kospeech.inference import Recognizer, collect_audio_files, evaluate_users, read_user_map, transcribe_files
from kospeech.metrics import character_error_rate
from kospeech.vocabs import Vocabulary

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cli():
    from kospeech.cli.transcribe import main

    return main


def test_text_output_one_line_per_file_with_a_directory(cli, world, capsys):
    status = cli(["--checkpoint", str(world.checkpoint), str(world.wavs[0].parent)])
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert [line.split("\t")[0] for line in lines] == [str(path) for path in world.wavs]
    expected = Recognizer.from_checkpoint(world.checkpoint).transcribe(world.wavs)
    assert [line.split("\t")[1] for line in lines] == [result.text for result in expected]


def test_jsonl_with_user_map_timestamps_and_a_default_user(cli, world, tmp_path, capsys):
    user_map = tmp_path / "users.tsv"
    user_map.write_text(f"# audio\tuser\nwav/utt1.wav\tbob\n{world.wavs[2]}\talice\n", encoding="utf-8")
    status = cli(
        [
            "--checkpoint", str(world.checkpoint),
            "--adapter-dir", str(world.adapter_dir),
            "--user-map", str(user_map),
            "--user", "alice",
            "--format", "jsonl",
            "--timestamps",
            *map(str, world.wavs[:3]),
        ]
    )  # fmt: skip
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    assert [record["user"] for record in records] == ["alice", "bob", "alice"]
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir)
    expected = recognizer.transcribe(world.wavs[:3], user=["alice", "bob", "alice"], return_timestamps=True)
    for record, result in zip(records, expected):
        assert record["text"] == result.text and record["tokens"] == result.tokens
        assert [stamp["start"] for stamp in record["timestamps"]] == [stamp.start for stamp in result.timestamps]


def test_a_user_map_names_a_korean_file_whichever_unicode_form_its_name_has_on_disk(cli, world, tmp_path, capsys):
    """Review, stop 34: a file named on macOS has its Hangul name decomposed (NFD) on disk; the map, read as NFC,
    never matched it, and the file was transcribed with the base model without a word but a warning."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    decomposed = folder / unicodedata.normalize("NFD", "회의록.wav")
    decomposed.write_bytes(world.wavs[1].read_bytes())
    for spelling in ("NFD", "NFC"):
        user_map = tmp_path / "users.tsv"
        user_map.write_text(f"{unicodedata.normalize(spelling, '회의록.wav')}\tbob\n", encoding="utf-8")
        user_map.rename(folder / "users.tsv")
        status = cli(
            ["--checkpoint", str(world.checkpoint), "--adapter-dir", str(world.adapter_dir),
             "--user-map", str(folder / "users.tsv"), "--format", "jsonl", str(decomposed)]
        )  # fmt: skip
        records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert status == 0 and [record["user"] for record in records] == ["bob"], spelling


def test_bad_file_is_reported_and_the_others_still_transcribed(cli, world, tmp_path, capsys):
    bad = tmp_path / "wav" / "broken.wav"
    bad.write_bytes(b"not audio" * 50)
    status = cli(["--checkpoint", str(world.checkpoint), "--format", "jsonl", str(world.wavs[0]), str(bad)])
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert status == 1
    assert "text" in records[0] and "broken.wav" in records[1]["error"]
    assert f"error: {bad}: not a readable audio file" in captured.err  # the path named once, not "{bad}: {bad}:"
    assert "1 of 2 files failed" in captured.err


def test_unknown_user_stops_before_any_output(cli, world, capsys):
    args = ["--checkpoint", str(world.checkpoint), "--adapter-dir", str(world.adapter_dir), "--user", "zoe"]
    status = cli([*args, str(world.wavs[0])])
    captured = capsys.readouterr()
    assert status == 2 and captured.out == ""
    assert "unknown user 'zoe'" in captured.err and "['alice', 'bob']" in captured.err
    assert cli([*args, "--fallback-to-base", str(world.wavs[0])]) == 0
    assert cli(["--checkpoint", str(world.checkpoint), "--timestamps", str(world.wavs[0])]) == 2


def test_what_stops_a_run_midway_is_one_error_line_not_a_traceback(cli, world, tmp_path, monkeypatch, capsys):
    """Review, stop 33: an adapter deleted while the files were transcribed, or an --output-dir that is a file,
    ended in tracebacks (the latter after all the transcription work)."""
    adapters = tmp_path / "copied_adapters"
    adapters.mkdir()
    for path in world.adapter_dir.glob("*_adapter.pt"):
        (adapters / path.name).write_bytes(path.read_bytes())
    from kospeech.cli import transcribe as transcribe_cli

    real = transcribe_cli.transcribe_files

    def deleting_after_the_first(*args, **kwargs):
        for index, item in enumerate(real(*args, **kwargs)):
            yield item
            if index == 0:
                (adapters / "alice_adapter.pt").unlink()  # an operator's cleanup while the run goes on

    monkeypatch.setattr(transcribe_cli, "transcribe_files", deleting_after_the_first)
    status = cli(
        ["--checkpoint", str(world.checkpoint), "--adapter-dir", str(adapters), "--user", "alice", "--batch-size", "1"]
        + [str(path) for path in world.wavs[:3]]
    )
    captured = capsys.readouterr()
    assert status == 1 and len(captured.out.splitlines()) == 1
    assert captured.err.count("error:") == 1 and "alice" in captured.err and "Traceback" not in captured.err
    monkeypatch.setattr(transcribe_cli, "transcribe_files", real)
    a_file = tmp_path / "taken"
    a_file.write_text("")
    status = cli(
        ["--checkpoint", str(world.checkpoint), "--format", "srt", "--output-dir", str(a_file), str(world.wavs[0])]
    )
    captured = capsys.readouterr()
    assert status == 2 and f"--output-dir {a_file} is a file" in captured.err and captured.out == ""


@pytest.mark.slow
def test_a_reader_that_stops_reading_ends_the_command_quietly(world):
    """``kospeech-transcribe ... | head -1``: status 141 and no traceback (review, stop 33: BrokenPipeError)."""
    command = [str(Path(sys.executable).parent / "kospeech-transcribe"), "--checkpoint", str(world.checkpoint)]
    process = subprocess.Popen(
        [*command, "--batch-size", "1", *map(str, world.wavs * 20)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout.readline()
    process.stdout.close()  # as `head -1` does after its line
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141 and "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


def test_collect_files_and_read_user_map_errors(world, tmp_path):
    (tmp_path / "wav" / "notes.txt").write_text("not audio")
    assert collect_audio_files([tmp_path / "wav"]) == world.wavs
    # review, stop 37: a file named twice was transcribed twice (two subtitle files with one name: an error), and a
    # suffix given as a string matched its substrings (notes.w, or no suffix at all)
    (tmp_path / "wav" / "README").write_text("not audio")
    assert collect_audio_files([world.wavs[1], tmp_path / "wav", world.wavs[1]]) == [world.wavs[1]] + [
        path for path in world.wavs if path != world.wavs[1]
    ]
    assert collect_audio_files([tmp_path / "wav"], ".wav") == [path for path in world.wavs if path.suffix == ".wav"]
    with pytest.raises(FileNotFoundError, match="nothing.wav"):
        collect_audio_files([tmp_path / "nothing.wav"])
    bad = tmp_path / "map.tsv"
    bad.write_text("a.wav\tbob\nb.wav\n", encoding="utf-8")
    with pytest.raises(ValueError, match="map.tsv:2"):
        read_user_map(bad)
    bad.write_text("a.wav\t../bob\n", encoding="utf-8")
    with pytest.raises(ValueError, match="map.tsv:1: invalid adapter name"):
        read_user_map(bad)
    bad.write_text("a.wav\tbob\n./a.wav\tcarol\n", encoding="utf-8")
    with pytest.raises(ValueError, match="listed twice"):
        read_user_map(bad)


def test_transcribe_files_isolates_bad_files(world, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF")
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir, batch_size=2)
    files = [world.wavs[0], bad, world.wavs[1]]
    results = list(transcribe_files(recognizer, files, ["alice", "bob", None], files_per_call=3))
    assert [path for path, _, _ in results] == files
    assert isinstance(results[1][2], ValueError) and "bad.wav" in str(results[1][2])
    assert results[0][2].adapter == "alice" and results[2][2].adapter is None


def test_evaluate_users_per_user_and_overall(world):
    recognizer = Recognizer.from_checkpoint(world.checkpoint, adapter_dir=world.adapter_dir)
    references = ["가나", "다라 마", "바사", "아자차"]
    users = ["alice", "bob", None, "alice"]
    figures = evaluate_users(recognizer, world.wavs, references, users)
    adapted = recognizer.transcribe(world.wavs, user=users)
    base = recognizer.transcribe(world.wavs)
    assert figures["overall"]["adapter"]["cer"] == pytest.approx(
        character_error_rate(references, [result.text for result in adapted])
    )
    assert figures["overall"]["base"]["cer"] == pytest.approx(
        character_error_rate(references, [result.text for result in base])
    )
    alice = figures["per_user"]["alice"]
    assert alice["adapter_applied"] and alice["adapter"]["num_utterances"] == 2
    assert alice["adapter"]["cer"] == pytest.approx(
        character_error_rate([references[0], references[3]], [adapted[0].text, adapted[3].text])
    )
    nobody = figures["per_user"]["<none>"]
    assert nobody["adapter"] == {**nobody["base"], "name": "<none>/adapter"} and not nobody["adapter_applied"]


def test_eval_recipe_reports_per_user_figures(world, tmp_path):
    from kospeech.cli.eval import evaluate_checkpoint
    from kospeech.config import EvalConfig

    vocab = Vocabulary(TOKENS)
    transcripts = ["가나", "다라", "바사", "아자"]
    entries = [
        ManifestEntry(path, text, tuple(vocab.encode(text)), speaker)
        for path, text, speaker in zip(world.wavs, transcripts, ["alice", "bob", "alice", None])
    ]
    manifest = tmp_path / "test.tsv"
    write_manifest(manifest, entries)
    user_map = tmp_path / "users.tsv"
    user_map.write_text(f"{world.wavs[3]}\tbob\n", encoding="utf-8")
    job = EvalConfig(
        checkpoint_path=str(world.checkpoint),
        manifest_path=str(manifest),
        adapter_dir=str(world.adapter_dir),
        user_map=str(user_map),
        batch_size=4,
        device="cpu",
        output_dir=str(tmp_path / "eval"),
    )
    results = evaluate_checkpoint(job)
    per_user = results["per_user"]
    assert sorted(per_user["per_user"]) == ["alice", "bob"]
    assert per_user["per_user"]["bob"]["adapter"]["num_utterances"] == 2
    assert per_user["overall"]["base"]["cer"] == pytest.approx(results["base"]["cer"])
    written = json.loads((tmp_path / "eval" / "results.json").read_text(encoding="utf-8"))
    assert written["per_user"]["overall"] == per_user["overall"]


def test_eval_refuses_an_empty_manifest_and_a_missing_adapter_before_scoring(world, tmp_path, caplog):
    """Review, stop 34: an empty manifest failed inside the batch sampler without naming the file, and a missing
    adapter was reported only after the whole base model had been scored. Whether the base was scored is read from
    the log: the base pass ends with its ``base: cer ...`` line."""
    from kospeech.cli import eval as eval_cli
    from kospeech.config import EvalConfig

    def refused(job, error, match):
        with caplog.at_level("INFO", logger=eval_cli.logger.name), pytest.raises(error, match=match):
            eval_cli.evaluate_checkpoint(job)
        assert not any(record.getMessage().startswith("base: cer") for record in caplog.records)  # not scored
        caplog.clear()

    empty = tmp_path / "empty.tsv"
    empty.write_text("", encoding="utf-8")
    job = EvalConfig(checkpoint_path=str(world.checkpoint), manifest_path=str(empty), output_dir=str(tmp_path / "e"))
    refused(job, ValueError, f"the manifest {empty} holds no utterances")
    vocab = Vocabulary(TOKENS)
    manifest = write_manifest(
        tmp_path / "test.tsv", [ManifestEntry(world.wavs[0], "가나", tuple(vocab.encode("가나")))]
    )
    job.manifest_path, job.adapter_path = str(manifest), str(tmp_path / "nonexistent.pt")
    refused(job, FileNotFoundError, "nonexistent.pt")

    # review, stop 39: a user of adapter_dir without an adapter was found after the base pass over the whole manifest
    strangers = write_manifest(
        tmp_path / "carol.tsv", [ManifestEntry(world.wavs[0], "가나", tuple(vocab.encode("가나")), "carol")]
    )
    job.manifest_path, job.adapter_path, job.adapter_dir = str(strangers), None, str(world.adapter_dir)
    refused(job, UnknownUserError, "carol")
    # and data settings naming training manifests (data=kspon) without manifest_path: a TypeError on None before
    job.manifest_path, job.adapter_dir = None, None
    job.data.train_manifest = str(manifest)
    refused(job, ConfigError, r"set manifest_path=\.\.\. \(the utterances to score")
    # the same job with the manifest is scored, and says so in the log the checks above read
    job.manifest_path = str(manifest)
    with caplog.at_level("INFO", logger=eval_cli.logger.name):
        eval_cli.evaluate_checkpoint(job)
    assert any(record.getMessage().startswith("base: cer") for record in caplog.records)


def test_a_progress_bar_shows_on_the_terminal_while_the_results_go_to_a_pipe(world):
    terminal, stderr = pty.openpty()
    fcntl.ioctl(stderr, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    environment = {key: value for key, value in os.environ.items() if key != "TQDM_DISABLE"}
    command = [str(Path(sys.executable).parent / "kospeech-transcribe"), "--checkpoint", str(world.checkpoint)]
    try:
        done = subprocess.run(
            [*command, *map(str, world.wavs[:3])], stdout=subprocess.PIPE, stderr=stderr, env=environment, timeout=120
        )
        chunks = []
        while select.select([terminal], [], [], 0.5)[0]:  # everything the command wrote to its terminal
            chunks.append(os.read(terminal, 1 << 16))
        shown = b"".join(chunks).decode("utf-8", "replace")
    finally:
        os.close(stderr)
        os.close(terminal)
    assert done.returncode == 0 and len(done.stdout.decode().splitlines()) == 3
    assert "transcribing" in shown and "3/3" in shown
