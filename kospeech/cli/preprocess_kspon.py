r"""``kospeech-preprocess-kspon``: build a KoSpeech manifest and vocabulary from a KsponSpeech corpus tree.

    python bin/preprocess_ksponspeech.py /data/KsponSpeech data/kspon --mode phonetic --unit character \
        --valid-ratio 0.01

``--compat kospeech`` (default) filters transcripts with upstream KoSpeech's rules (sentence_filter, its percent
files, cp949; a corpus converted to UTF-8 is read as UTF-8) and also writes KoSpeech's aihub_labels.csv and transcripts.txt; ``--compat clean`` uses this
project's cleaner rules (clean_transcript). Writes OUT_DIR/train.tsv, OUT_DIR/valid.tsv (with --valid-ratio) and
OUT_DIR/vocab.csv; for each evaluation script file found (ROOT_DIR/KsponSpeech_scripts/eval_clean.trn and
eval_other.trn, or in --scripts-dir), also OUT_DIR/eval_clean.tsv / OUT_DIR/eval_other.tsv: the pcm files under
ROOT_DIR/KsponSpeech_eval its lines name, filtered by the same rules and labelled with the training vocabulary.
Prints a JSON summary.
"""

import argparse
import json
import logging
from pathlib import Path
from typing import List

from kospeech.cli.common import exit_on_user_errors, setup_logging
from kospeech.data.ksponspeech import (
    COMPAT_MODES,
    EVAL_SPLITS,
    SCRIPTS_FOLDER,
    TRANSCRIPT_MODES,
    preprocess_ksponspeech,
    preprocess_ksponspeech_eval,
)
from kospeech.fileio import atomic_write_json, strict_json
from kospeech.vocabs import OUTPUT_UNITS, Vocabulary

logger = logging.getLogger(__name__)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "root_dir", type=Path, help="KsponSpeech root (holds KsponSpeech_01/ ... KsponSpeech_05/, KsponSpeech_eval/)"
    )
    parser.add_argument("out_dir", type=Path, help="where the manifests and vocab.csv are written")
    parser.add_argument(
        "--compat",
        choices=COMPAT_MODES,
        default="kospeech",
        help="transcript rules: kospeech (upstream KoSpeech's, byte for byte) or clean (this project's)",
    )
    parser.add_argument("--mode", choices=TRANSCRIPT_MODES, default="phonetic", help="side of (spelling)/(phonetic)")
    parser.add_argument("--unit", choices=OUTPUT_UNITS, default="character", help="vocabulary output unit")
    parser.add_argument("--valid-ratio", type=float, default=0.0, help="seeded share held out into valid.tsv")
    parser.add_argument("--seed", type=int, default=0, help="seed of the valid split")
    parser.add_argument("--keep-punctuation", action="store_true", help="keep . , ? ! in transcripts (clean only)")
    parser.add_argument("--audio-extension", default=".pcm", help="suffix of the audio files to collect")
    parser.add_argument(
        "--scripts-dir",
        type=Path,
        default=None,
        help=f"folder holding eval_clean.trn and eval_other.trn (default: ROOT_DIR/{SCRIPTS_FOLDER}; the "
        "evaluation sets whose file is there are preprocessed)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def _eval_splits(scripts_dir: Path, explicit: bool) -> List[str]:
    """The evaluation sets whose script file is in ``scripts_dir``; a missing one is logged.

    Raises:
        FileNotFoundError: ``--scripts-dir`` was given and holds neither script file.
    """
    splits = [split for split in EVAL_SPLITS if (scripts_dir / f"{split}.trn").is_file()]
    if explicit and not splits:
        raise FileNotFoundError(f"--scripts-dir {scripts_dir} holds none of {[f'{s}.trn' for s in EVAL_SPLITS]}")
    for split in EVAL_SPLITS:
        if split not in splits:
            logger.warning("no %s.trn in %s: %s.tsv is not written", split, scripts_dir, split)
    return splits


def main(argv=None) -> None:
    """``kospeech-preprocess-kspon``; a mistake ends with one ``error:`` line and status 1."""
    args = parse_args(argv)
    setup_logging()
    exit_on_user_errors(lambda: _preprocess(args))


def _preprocess(args: argparse.Namespace) -> None:
    if not args.root_dir.is_dir():  # before the warnings about its missing evaluation scripts
        raise FileNotFoundError(f"KsponSpeech root directory not found: {args.root_dir}")
    # the evaluation scripts are looked for first: a wrong --scripts-dir is reported before hours of work
    scripts_dir = args.scripts_dir if args.scripts_dir is not None else args.root_dir / SCRIPTS_FOLDER
    splits = _eval_splits(scripts_dir, explicit=args.scripts_dir is not None)
    summary = preprocess_ksponspeech(
        args.root_dir,
        args.out_dir,
        mode=args.mode,
        unit=args.unit,
        valid_ratio=args.valid_ratio,
        seed=args.seed,
        keep_punctuation=args.keep_punctuation,
        audio_extension=args.audio_extension,
        progress=not args.no_progress,
        compat=args.compat,
    )
    if splits:
        summary["eval"] = preprocess_ksponspeech_eval(
            args.root_dir,
            args.out_dir,
            Vocabulary.from_csv(summary["vocab"], unit=args.unit),
            mode=args.mode,
            compat=args.compat,
            keep_punctuation=args.keep_punctuation,
            scripts_dir=scripts_dir,
            splits=splits,
            audio_extension=args.audio_extension,
            progress=not args.no_progress,
        )
    # the run's settings beside its outputs (seed and valid ratio decide the split)
    record = {"settings": json.loads(json.dumps(vars(args), default=str)), "summary": summary}
    logger.info("settings and summary: %s", atomic_write_json(args.out_dir / "preprocess.json", record))
    print(strict_json(summary))


if __name__ == "__main__":
    main()
