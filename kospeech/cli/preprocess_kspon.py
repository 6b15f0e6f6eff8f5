"""``kospeech-preprocess-kspon``: build a KoSpeech manifest and vocabulary from a KsponSpeech corpus tree.

    python bin/preprocess_ksponspeech.py /data/KsponSpeech data/kspon --mode phonetic --unit character \
        --valid-ratio 0.01

Writes OUT_DIR/train.tsv, OUT_DIR/valid.tsv (with --valid-ratio) and OUT_DIR/vocab.csv, and prints a JSON summary.
"""

import argparse
from pathlib import Path

from kospeech.cli.common import setup_logging
from kospeech.data.ksponspeech import TRANSCRIPT_MODES, preprocess_ksponspeech
from kospeech.fileio import strict_json
from kospeech.vocabs import OUTPUT_UNITS


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root_dir", type=Path, help="KsponSpeech root (holds KsponSpeech_01/ ...)")
    parser.add_argument("out_dir", type=Path, help="where the manifests and vocab.csv are written")
    parser.add_argument("--mode", choices=TRANSCRIPT_MODES, default="phonetic", help="side of (spelling)/(phonetic)")
    parser.add_argument("--unit", choices=OUTPUT_UNITS, default="character", help="vocabulary output unit")
    parser.add_argument("--valid-ratio", type=float, default=0.0, help="seeded share held out into valid.tsv")
    parser.add_argument("--seed", type=int, default=0, help="seed of the valid split")
    parser.add_argument("--keep-punctuation", action="store_true", help="keep . , ? ! in transcripts")
    parser.add_argument("--audio-extension", default=".pcm", help="suffix of the audio files to collect")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


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
    )
    print(strict_json(summary))


if __name__ == "__main__":
    main()
