"""``kospeech-demo`` (what ``make demo`` runs): personalize the shipped base model for every built-in user and show what it buys.

Synthesizes the built-in users' speech (into ``data/demo_users``, cached after the first run; the whole corpus is
built only when the shipped base model is missing), loads the shipped base model, trains one adapter per user on their
enrollment set, then transcribes each user's test set with and without their adapter.

    python bin/demo.py [--preset demo] [--adapter-type residual_head] [--users user01 user02]
"""

import argparse
from pathlib import Path
from typing import Optional, Sequence

import torch

from kospeech.cli.common import exit_on_user_errors, positive_int, setup_logging
from kospeech.data.synthetic.corpus import PRESETS
from kospeech.demo import DemoConfig, format_table, run_demo
from kospeech.models import registered_adapter_types
from kospeech.trainer import AdapterTrainConfig


def demo_config(argv: Optional[Sequence[str]] = None) -> DemoConfig:
    """The demo's settings from its command line: the chosen adapter type's recipe, the given values on top."""
    defaults = DemoConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", default=defaults.corpus_dir, help="full corpus (only to train a missing base)")
    parser.add_argument("--users-dir", default=defaults.users_dir, help="where the users' speech is synthesized")
    parser.add_argument("--preset", default=defaults.corpus_preset, choices=sorted(PRESETS), help="corpus preset")
    parser.add_argument(
        "--base",
        default=defaults.base_model_path,
        help="base checkpoint (the default is trained when missing; another must exist)",
    )
    parser.add_argument("--output-dir", default=defaults.output_dir, help="adapters, results.json and the plot")
    parser.add_argument(
        "--adapter-type", default=defaults.adapter.adapter_type, choices=registered_adapter_types(), help="adapter type"
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=None, help="maximum adapter epochs (default: the type's recipe)"
    )
    parser.add_argument("--users", nargs="*", default=None, help="users to adapt (default: all built-in users)")
    parser.add_argument(
        "--max-enroll", type=positive_int, default=None, help="enrollment utterances per user (default all)"
    )
    parser.add_argument("--max-test", type=positive_int, default=None, help="test utterances per user (default all)")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.base != defaults.base_model_path and not Path(args.base).is_file():  # a typo must not train a new base
        parser.error(f"--base {args.base}: no such file (leave --base out to use, or train, the shipped base)")
    chosen = {"num_threads": args.threads, **({} if args.epochs is None else {"num_epochs": args.epochs})}
    return DemoConfig(
        corpus_dir=args.corpus_dir,
        users_dir=args.users_dir,
        corpus_preset=args.preset,
        base_model_path=args.base,
        output_dir=args.output_dir,
        users=args.users,
        max_enroll=args.max_enroll,
        max_test=args.max_test,
        # the type's own recipe: changing only adapter_type kept the encoder recipe's sizes and dropout
        adapter=AdapterTrainConfig.for_adapter_type(args.adapter_type, base_model_path="", num_workers=0, **chosen),
    )


def main() -> None:
    config = exit_on_user_errors(demo_config)
    exit_on_user_errors(lambda: setup_logging(Path(config.output_dir) / "demo.log"))
    torch.set_num_threads(config.adapter.num_threads)
    records = exit_on_user_errors(lambda: run_demo(config))

    output_dir = Path(config.output_dir)
    print()
    print(format_table(records))
    print()
    print(f"results: {output_dir / 'results.json'}")
    print(f"plot:    {output_dir / 'personalization.png'}")
    print(f"adapters: {output_dir / 'adapters'}")
    print()
    print("next:")
    first = records[0]["user"] if records else "user01"
    print(
        f"  python bin/inference.py --checkpoint {config.base_model_path} --adapter-dir {output_dir / 'adapters'} "
        f"--user {first} {Path(config.users_dir) / 'users' / first / 'wavs'}"
    )
    print("  python benchmarks/personalization.py --quick     # adapter types vs full fine-tuning")
    print("  see ADAPTER_README.md for the Python API")


if __name__ == "__main__":
    main()
