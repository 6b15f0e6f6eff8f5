"""``kospeech-preprocess-kspon``: build a KoSpeech manifest and vocabulary from a KsponSpeech corpus tree.

    python bin/preprocess_ksponspeech.py /data/KsponSpeech data/kspon --mode phonetic --unit character \
        --valid-ratio 0.01

``--compat kospeech`` (default) filters transcripts with upstream KoSpeech's rules (sentence_filter, its percent
files, strict cp949) and also writes KoSpeech's aihub_labels.csv and transcripts.txt; ``--compat clean`` uses this
project's cleaner rules (clean_transcript). Writes OUT_DIR/train.tsv, OUT_DIR/valid.tsv (with --valid-ratio) and
OUT_DIR/vocab.csv; when the evaluation folder exists (ROOT_DIR/KsponSpeech_eval, or --eval-dir), also
OUT_DIR/eval_clean.tsv and OUT_DIR/eval_other.tsv labelled with the training vocabulary. Prints a JSON summary.
"""

import argparse
from pathlib import Path
from typing import Optional

from kospeech.cli.common import setup_logging
from kospeech.data.ksponspeech import (
    COMPAT_MODES,
    EVAL_FOLDER,
    TRANSCRIPT_MODES,
    preprocess_ksponspeech,
    preprocess_ksponspeech_eval,
)
from kospeech.fileio import strict_json
from kospeech.vocabs import OUTPUT_UNITS, Vocabulary


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root_dir", type=Path, help="KsponSpeech root (holds KsponSpeech_01/ ...)")
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
        "--eval-dir",
        type=Path,
        default=None,
        help=f"folder holding eval_clean/ and eval_other/ (default: ROOT_DIR/{EVAL_FOLDER} when it exists)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def _eval_dir(args: argparse.Namespace) -> Optional[Path]:
    """The evaluation folder to preprocess: ``--eval-dir`` (which must exist), else the default one if present."""
    if args.eval_dir is not None:
        return args.eval_dir
    default = args.root_dir / EVAL_FOLDER
    return default if default.is_dir() else None


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_logging()
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
    eval_dir = _eval_dir(args)
    if eval_dir is not None:
        summary["eval"] = preprocess_ksponspeech_eval(
            eval_dir,
            args.out_dir,
            Vocabulary.from_csv(summary["vocab"], unit=args.unit),
            mode=args.mode,
            compat=args.compat,
            keep_punctuation=args.keep_punctuation,
            audio_extension=args.audio_extension,
            progress=not args.no_progress,
        )
    print(strict_json(summary))


if __name__ == "__main__":
    main()
