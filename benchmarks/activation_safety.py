"""How often a small enrollment set gets an adapter activated that is worse on the user's unseen speech.

    python benchmarks/activation_safety.py            # sizes 5, 8, 12; 3 sets each; 4 voices (about 10 minutes)
    python benchmarks/activation_safety.py --quick    # size 5, one set per voice (about 1 minute)

For each built-in voice (user01..user04 of the demo corpus, synthesized into ``--users-dir`` once, as
``benchmarks/service_load.py`` does) and each enrollment size, ``--sets`` random enrollment sets are drawn from the
voice's 40 enrollment utterances and an ``encoder`` adapter is trained on each with the type's recipe, exactly as the
service's training job does (``AdapterTrainConfig.for_adapter_type``; the trainer holds out ``valid_fraction`` of the
set and keeps the epoch with the best held-out CER). Each adapter is then scored on the voice's 16 test utterances,
which no run saw. Each adapter is judged twice: by the rule before stop 33 (any held-out CER below the base's,
applied to the run's held-out figures) and by the trainer's own verdict now (at least ``train.min_fewer_errors``
fewer character errors), so both rules judge the same adapters. Prints one line per run, then per rule how many adapters it activated and how many of
those were better and worse than the base on the unseen utterances; writes everything to
``runs/benchmarks/activation_safety.json``. Last line ``ratio:``: the mean unseen CER gain per run under the rule of
now / under the rule before (how much of the gain the safer rule keeps).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_utils import VOICE_ENROLLMENT, VOICES, check_base, machine, print_table, voice_sets, write_results  # noqa: E402

from kospeech.checkpoint import load_checkpoint  # noqa: E402
from kospeech.cli.common import positive_int  # noqa: E402
from kospeech.data.manifest import ManifestEntry, read_manifest  # noqa: E402
from kospeech.inference import Recognizer  # noqa: E402
from kospeech.metrics import character_error_rate  # noqa: E402
from kospeech.trainer import AdapterTrainConfig, AdapterTrainer  # noqa: E402


def rules(min_fewer_errors: int) -> Dict[str, Callable[[Dict[str, Any]], bool]]:
    """The acceptance rules compared: before stop 33, and now (the trainer's own verdict)."""
    return {
        "held-out CER below the base's": lambda run: run["held_out_cer_adapter"] < run["held_out_cer_base"],
        f"at least {min_fewer_errors} fewer character errors": lambda run: run["accepted"],
    }


def unseen_cer(recognizer: Recognizer, test: List[ManifestEntry], user: Optional[str] = None) -> float:
    """CER of ``recognizer`` on a voice's test utterances, with ``user``'s adapter or the base."""
    results = recognizer.transcribe([entry.audio_path for entry in test], user=user)
    return character_error_rate([entry.transcript for entry in test], [result.text for result in results])


def train_and_score(args: argparse.Namespace, voice: str, size: int, index: int, sets: Dict, base, folder: Path):
    """One run: train on a random enrollment set of ``size``, score the best adapter on the unseen utterances."""
    enroll = read_manifest(sets[voice]["enroll"], base.vocab)
    chosen = random.Random(f"{voice}-{size}-{index}").sample(enroll, size)
    config = AdapterTrainConfig.for_adapter_type(
        "encoder",
        base_model_path=args.base,
        adapter_name=voice,
        adapter_save_dir=str(folder / "adapter"),
        output_dir=str(folder / "run"),
        device="cpu",
        num_threads=args.threads,
        num_workers=0,
        seed=index,
    )
    trainer = AdapterTrainer(config, base.vocab, base.feature_config, chosen, None, base.model_config)
    trainer.train(base.build_model(), adapter_name=voice)
    served = Recognizer.from_checkpoint(args.base, adapter_dir=folder / "adapter", allow_rejected=True)
    return {
        "voice": voice,
        "size": size,
        "set": index,
        "held_out": len(trainer.valid_entries),
        "held_out_cer_base": trainer.base_result.cer,
        "held_out_cer_adapter": trainer.state.best_cer,
        "fewer_errors": trainer.fewer_errors_than_base(),
        "accepted": not trainer.outcome["rejected"],
        "unseen_cer_adapter": unseen_cer(served, read_manifest(sets[voice]["test"], base.vocab), voice),
    }


def enrollment_sizes(text: str) -> List[int]:
    """An ``argparse`` type: comma-separated sizes of 1 to the voices' enrollment utterances (a size out of range
    otherwise fails only when its turn comes, after the runs of the sizes before it)."""
    sizes = [positive_int(value) for value in text.split(",")]
    if max(sizes) > VOICE_ENROLLMENT:
        raise argparse.ArgumentTypeError(f"at most {VOICE_ENROLLMENT} (the voices' enrollment utterances), got {text}")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="size 5, one set per voice (about 1 minute)")
    parser.add_argument("--base", default="pretrained/ds2_synthetic.pt", help="base checkpoint")
    parser.add_argument("--users-dir", default="data/service_load_users", help="the voices' speech (built once)")
    parser.add_argument("--sizes", type=enrollment_sizes, default="5,8,12", help="enrollment sizes, comma-separated")
    parser.add_argument("--sets", type=positive_int, default=3, help="random enrollment sets per voice and size")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch intra-op threads")
    parser.add_argument("--output", default="runs/benchmarks/activation_safety.json", help="results JSON")
    args = parser.parse_args()
    check_base(args.base)
    if args.quick:  # set on args, so that the config the results record is what ran
        args.sizes, args.sets = [5], 1
    torch.set_num_threads(args.threads)
    base = load_checkpoint(args.base)
    sets = voice_sets(args.users_dir, base.vocab)
    plain = Recognizer.from_checkpoint(args.base)
    runs: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="kospeech_activation_") as scratch:
        for voice in VOICES:
            base_cer = unseen_cer(plain, read_manifest(sets[voice]["test"], base.vocab))  # the same for every run
            for size in args.sizes:
                for index in range(args.sets):
                    folder = Path(scratch) / f"{voice}-{size}-{index}"
                    runs.append(
                        {**train_and_score(args, voice, size, index, sets, base, folder), "unseen_cer_base": base_cer}
                    )
                    print(
                        {key: round(value, 4) if isinstance(value, float) else value for key, value in runs[-1].items()}
                    )
    margin = AdapterTrainConfig.for_adapter_type("encoder", base_model_path=args.base).min_fewer_errors
    summary = {}
    for name, accepts in rules(margin).items():
        activated = [run for run in runs if accepts(run)]
        summary[name] = {
            "activated": len(activated),
            "better_unseen": sum(run["unseen_cer_adapter"] < run["unseen_cer_base"] for run in activated),
            "worse_unseen": sum(run["unseen_cer_adapter"] > run["unseen_cer_base"] for run in activated),
            "mean_unseen_gain": sum(run["unseen_cer_base"] - run["unseen_cer_adapter"] for run in activated)
            / len(runs),
        }
    print_table(
        ["rule", "activated", "better", "worse", "mean gain"],
        [
            [name, f"{figures['activated']}/{len(runs)}", figures["better_unseen"], figures["worse_unseen"],
             f"{figures['mean_unseen_gain']:.4f}"]
            for name, figures in summary.items()
        ],
    )  # fmt: skip
    before, now = (figures["mean_unseen_gain"] for figures in summary.values())
    ratio = now / before if before > 0 else float("nan")
    results = {"machine": machine(), "min_fewer_errors": margin, "rules": summary, "runs": runs, "ratio": ratio}
    print(f"results: {write_results(args.output, results, args)}")
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
