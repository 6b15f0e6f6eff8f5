"""Confidence calibration: fit word and utterance maps on held-out data, report AUROC and a reliability diagram.

    python benchmarks/confidence.py             # fit, evaluate, write the JSON and the diagram
    python benchmarks/confidence.py --store     # ... and record the fitted maps in the base checkpoint
    python benchmarks/confidence.py --quick     # 40 utterances per set

The users' adapters are ``make demo``'s (``runs/demo/adapters``); where that folder holds none, they are trained
first, as ``make demo`` trains them.

Held-out calibration data: the base speakers' dev set and the built-in users' enrollment sets, decoded with the
base alone (the base never trained on them). Evaluation data: the users' test sets, decoded with the base alone
and with each user's adapter. Labels: an utterance is "good" when its CER is at most 10 %; a word is right when
a word-level alignment to the reference matches it.

Results go to ``runs/benchmarks/confidence.json`` and the reliability diagram to
``docs/figures/confidence_reliability.png``; the last line is ``ratio: X.XX`` = the lower of the two utterance
AUROCs (base, adapter) / 0.8, the target (>= 1 meets it).
"""

import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import Levenshtein
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _bench_utils import ensure_demo_adapters, save_figure, users_parser, write_results  # noqa: E402

from kospeech.checkpoint import load_checkpoint, store_confidence_calibration  # noqa: E402
from kospeech.data.manifest import read_manifest  # noqa: E402
from kospeech.inference import ConfidenceCalibration, Recognizer, Transcription  # noqa: E402
from kospeech.inference.confidence import PlattScaling, auroc, reliability_table  # noqa: E402
from kospeech.metrics import char_errors  # noqa: E402

GOOD_CER = 0.10
TARGET_AUROC = 0.8


def parse_args() -> argparse.Namespace:
    parser = users_parser(__doc__.split("\n\n")[0], "runs/benchmarks/confidence.json", "40 utterances per set")
    parser.add_argument("--corpus-dir", default="data/corpus_demo", help="base speakers' dev set (optional)")
    parser.add_argument("--store", action="store_true", help="record the fitted maps in --base")
    parser.add_argument(
        "--figure",
        help="the reliability diagram (default: docs/figures/confidence_reliability.png, the committed one; with "
        "--quick runs/benchmarks/confidence_reliability.png)",
    )
    args = parser.parse_args()
    if args.figure is None:
        folder = "runs/benchmarks" if args.quick else "docs/figures"
        args.figure = f"{folder}/confidence_reliability.png"
    return args


class Scored:
    """Raw and labelled measures of decoded utterances and their words."""

    def __init__(self) -> None:
        self.utterance_raw: List[float] = []
        self.utterance_good: List[bool] = []
        self.word_raw: List[float] = []
        self.word_right: List[bool] = []

    def add(self, reference: str, result: Transcription) -> None:
        errors, total = char_errors(reference, result.text)
        self.utterance_raw.append(result.confidence)
        self.utterance_good.append(errors / max(total, 1) <= GOOD_CER)
        hypothesis_words = [word.word for word in result.words]
        right = [False] * len(hypothesis_words)
        for operation, _, _, hyp_start, hyp_end in Levenshtein.opcodes(reference.split(), hypothesis_words):
            if operation == "equal":
                right[hyp_start:hyp_end] = [True] * (hyp_end - hyp_start)
        for word, is_right in zip(result.words, right):
            self.word_raw.append(word.confidence)
            self.word_right.append(is_right)


def decode(recognizer: Recognizer, manifest: Path, user: Optional[str], limit: Optional[int], scored: Scored) -> None:
    entries = read_manifest(manifest)[:limit]
    results = recognizer.transcribe([entry.audio_path for entry in entries], user=user, return_timestamps=True)
    for entry, result in zip(entries, results):
        scored.add(entry.transcript, result)


def evaluate(scored: Scored, calibration: ConfidenceCalibration) -> Dict[str, Any]:
    utterance = [calibration.utterance(raw) for raw in scored.utterance_raw]
    word = [calibration.word(raw) for raw in scored.word_raw]
    return {
        "utterances": len(utterance),
        "good_share": round(sum(scored.utterance_good) / len(utterance), 3),
        "utterance_auroc": round(auroc(scored.utterance_raw, scored.utterance_good), 4),
        "word_auroc": round(auroc(scored.word_raw, scored.word_right), 4),
        "utterance_reliability": reliability_table(utterance, scored.utterance_good),
        "word_reliability": reliability_table(word, scored.word_right),
    }


def plot(figures: Dict[str, Dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4))
    for axis, level in zip(axes, ("utterance", "word")):
        axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfectly calibrated")
        for name, values in figures.items():
            table = values[f"{level}_reliability"]
            axis.plot(
                [row["confidence"] for row in table],
                [row["accuracy"] for row in table],
                marker="o",
                label=f"{name} (AUROC {values[f'{level}_auroc']:.2f})",
            )
        axis.set_xlabel("calibrated confidence")
        axis.set_ylabel("CER <= 10 %" if level == "utterance" else "word right")
        axis.set_title(f"{level} confidence, users' test sets")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1)
        axis.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    limit = 40 if args.quick else None
    ensure_demo_adapters(args)
    checkpoint = load_checkpoint(args.base)
    # without a calibration the recognizer reports the raw measures, whatever the checkpoint holds
    recognizer = Recognizer(
        checkpoint.build_model(), checkpoint.vocab, checkpoint.feature_config, adapter_dir=args.adapter_dir
    )
    users = recognizer.available_users()
    users_dir = Path(args.users_dir) / "users"
    held_out = Scored()
    dev = Path(args.corpus_dir) / "base" / "dev.tsv"
    if dev.exists():
        decode(recognizer, dev, None, limit, held_out)
    for user in users:
        decode(recognizer, users_dir / user / "enroll.tsv", None, limit, held_out)
    calibration = ConfidenceCalibration(
        word=PlattScaling.fit(held_out.word_raw, held_out.word_right),
        utterance=PlattScaling.fit(held_out.utterance_raw, held_out.utterance_good),
    )
    tests = {"base": Scored(), "adapter": Scored()}
    for user in users:
        decode(recognizer, users_dir / user / "test.tsv", None, limit, tests["base"])
        decode(recognizer, users_dir / user / "test.tsv", user, limit, tests["adapter"])
    figures = {name: evaluate(scored, calibration) for name, scored in tests.items()}
    plot(figures, Path(args.figure))
    report = {
        "benchmark": "confidence",
        "quick": args.quick,
        "base": args.base,
        "users": users,
        "calibration": calibration.to_dict(),
        "held_out": {"utterances": len(held_out.utterance_raw), "words": len(held_out.word_raw)},
        "test": figures,
    }
    write_results(args.output, report, args)
    if args.store:
        store_confidence_calibration(args.base, calibration.to_dict())
        print(f"stored the calibration in {args.base}")
    for name, values in figures.items():
        print(
            f"{name:8s} utterance AUROC {values['utterance_auroc']:.3f}  word AUROC {values['word_auroc']:.3f}  "
            f"({values['utterances']} utterances, {values['good_share']:.0%} with CER <= 10 %)"
        )
    print(f"calibration: {calibration.to_dict()}")
    print(f"results: {args.output}, diagram: {args.figure}")
    lowest = min(values["utterance_auroc"] for values in figures.values())
    print(f"ratio: {lowest / TARGET_AUROC:.3f}")


if __name__ == "__main__":
    main()
