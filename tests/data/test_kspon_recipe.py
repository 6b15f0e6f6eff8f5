"""The KsponSpeech recipe of README end to end on a fixture tree in AI Hub's layout, with a tiny model.

The fixture mimics the real corpus: ``KsponSpeech_01/KsponSpeech_0001/KsponSpeech_00000N.pcm`` (raw 16 kHz 16-bit)
with cp949 ``.txt`` transcripts, ``KsponSpeech_eval/eval_clean`` / ``eval_other`` with ``.pcm`` files only, and
``KsponSpeech_scripts`` with UTF-8 ``train.trn``, ``dev.trn``, ``eval_clean.trn`` and ``eval_other.trn`` (lines
``<pcm path relative to the root> :: <raw transcript>``). The commands are README's,
run as subprocesses from the folder where ``data/kspon`` is written (``configs/data/kspon.yaml``'s paths are relative
to it), with small-run overrides appended to the training command.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kospeech.metrics import ErrorRateMeter, kospeech_char_errors, spaced_char_errors

ROOT = Path(__file__).resolve().parents[2]
TRAIN = [
    "b/ (3시)/(세 시)에 만나자.",
    "그+ 그 사람이 뭐* 했대?",
    "아/ 진짜 좋았어 n/",
    "(2개)/(두 개)만 주세요",
    "어 네, 네",
    "오늘 날씨 좋다",
]
EVAL = {"eval_clean": ["(3시)/(세 시)에 만나자", "진짜 좋았어"], "eval_other": ["o/ 두 개만 주세요", "네+ 네 l/"]}
SMALL_RUN = [
    "model=ds2_tiny",
    "train.num_epochs=1",
    "train.batch_size=2",
    "train.num_workers=0",
    "train.num_threads=1",
    "train.device=cpu",
    "train.warmup_steps=1",
]


def _speech(path: Path, seconds: float, seed: int) -> None:
    """A synthetic utterance: a tone glide with noise, raw little-endian int16 like KsponSpeech's .pcm files."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    wave = np.sin(2 * np.pi * (200 + 100 * seed) * t * (1 + t)) + 0.1 * rng.standard_normal(t.size)
    path.write_bytes((wave * 8000).astype("<i2").tobytes())


def _write_tree(raw: Path) -> None:
    folder = raw / "KsponSpeech_01" / "KsponSpeech_0001"
    folder.mkdir(parents=True)
    scripts = raw / "KsponSpeech_scripts"
    scripts.mkdir()
    lines = []
    for index, text in enumerate(TRAIN, start=1):
        _speech(folder / f"KsponSpeech_{index:06d}.pcm", 0.6, index)
        (folder / f"KsponSpeech_{index:06d}.txt").write_bytes(text.encode("cp949"))
        lines.append(f"KsponSpeech_01/KsponSpeech_0001/KsponSpeech_{index:06d}.pcm :: {text}\n")
    (scripts / "train.trn").write_text("".join(lines[:-1]), encoding="utf-8")
    (scripts / "dev.trn").write_text(lines[-1], encoding="utf-8")
    number = 0
    for split, texts in EVAL.items():
        folder = raw / "KsponSpeech_eval" / split
        folder.mkdir(parents=True)
        lines = []
        for text in texts:
            number += 1
            _speech(folder / f"KsponSpeech_E{number:05d}.pcm", 0.6, number)
            lines.append(f"KsponSpeech_eval/{split}/KsponSpeech_E{number:05d}.pcm :: {text}\n")
        (scripts / f"{split}.trn").write_text("".join(lines), encoding="utf-8")


def _run(arguments, cwd: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    done = subprocess.run(
        [sys.executable, *arguments], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_recipe_from_raw_folders_to_eval_cer(tmp_path: Path) -> None:
    _write_tree(tmp_path / "KsponSpeech")
    summary = json.loads(
        _run(
            [
                str(ROOT / "bin/preprocess_ksponspeech.py"),
                "KsponSpeech",
                "data/kspon",
                "--valid-ratio",
                "0.2",
                "--no-progress",
            ],
            tmp_path,
        )
    )
    assert summary["compat"] == "kospeech" and summary["utterances"] == 6
    assert (tmp_path / "data/kspon/aihub_labels.csv").is_file() and (tmp_path / "data/kspon/transcripts.txt").is_file()
    assert summary["eval"]["eval_clean"]["utterances"] == summary["eval"]["eval_other"]["utterances"] == 2
    references = (tmp_path / "data/kspon/eval_clean.tsv").read_text(encoding="utf-8")
    assert "세 시에 만나자" in references and "(3시)" not in references  # filtered like the training transcripts
    _run(
        [str(ROOT / "bin/main.py"), "--config-name=train", "train=ds2_train", "data=kspon", "model=ds2"]
        + SMALL_RUN
        + ["train.output_dir=runs/ds2_kspon"],
        tmp_path,
    )
    for split in ("eval_clean", "eval_other"):
        printed = _run(
            [
                str(ROOT / "bin/eval.py"),
                "checkpoint_path=runs/ds2_kspon/best.pt",
                f"manifest_path=data/kspon/{split}.tsv",
                f"output_dir=runs/eval_{split}",
            ],
            tmp_path,
        )
        results = json.loads(printed[printed.index("{") :])
        assert results == json.loads((tmp_path / f"runs/eval_{split}/results.json").read_text(encoding="utf-8"))
        base = results["base"]
        assert base["num_utterances"] == 2
        for key in ("cer", "cer_kospeech", "cer_with_spaces", "wer"):
            assert np.isfinite(base[key]) and base[key] >= 0


def test_cer_figures_kospeech_and_with_spaces() -> None:
    # KoSpeech's formula removes " " and "_" only; with spaces, a spacing error counts
    assert kospeech_char_errors("세 시에 만나", "세시에 만나_") == (0, 5)
    assert spaced_char_errors("세 시에 만나", "세시에  만나") == (1, 7)  # whitespace runs read as one space
    meter = ErrorRateMeter("eval_clean")
    meter.update(["세 시에 만나", "네 네"], ["세시에 만나", "네 내"])
    assert meter.cer == meter.cer_kospeech == pytest.approx(1 / 7)
    assert meter.cer_with_spaces == pytest.approx(2 / 10)
    figures = meter.to_dict()
    assert figures["cer_kospeech"] == meter.cer_kospeech and figures["num_chars_with_spaces"] == 10
    meter.reset()
    with pytest.raises(ValueError, match="no utterances"):
        _ = meter.cer_with_spaces
