"""Personalize the base model for one user, step by step, with the Python API.

Runs as is on the built-in data:

    python bin/adapter_training_example.py [--user user01] [--base pretrained/ds2_synthetic.pt]

1. build (or reuse) the built-in corpus, 2. load the shipped base model (or train a small one when it is
missing), 3. train an adapter on the user's enrollment set with the base frozen, 4. save it, 5. load it into
a fresh copy of the base, 6. compare base vs adapter CER on the user's test set.
"""

import argparse
from pathlib import Path

import _checkout  # noqa: F401  (this checkout first on sys.path)
import torch

from kospeech.checkpoint import load_checkpoint
from kospeech.cli import setup_logging
from kospeech.cli.common import exit_on_user_errors, positive_int
from kospeech.data import FeatureExtractor, build_dataloader, read_manifest
from kospeech.data.synthetic import ensure_corpus
from kospeech.demo import DemoConfig, train_demo_base
from kospeech.models import AdapterManager
from kospeech.trainer import AdapterTrainConfig, AdapterTrainer
from kospeech.evaluation import evaluate_base_and_adapter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--user", default="user01", help="built-in user to personalize for")
    parser.add_argument("--base", default="pretrained/ds2_synthetic.pt", help="base checkpoint (trained if missing)")
    parser.add_argument("--corpus-dir", default="data/corpus_demo", help="built-in corpus folder")
    parser.add_argument("--preset", default="demo", help="corpus preset: tiny, demo or bench")
    parser.add_argument("--adapter-type", default="encoder", help="head, residual_head or encoder")
    parser.add_argument(
        "--epochs", type=positive_int, default=None, help="maximum adapter epochs (default: the type's recipe)"
    )
    parser.add_argument("--output-dir", default="runs/adapter_example", help="adapters and logs go here")
    args = parser.parse_args()
    setup_logging()
    torch.set_num_threads(2)
    exit_on_user_errors(lambda: personalize(args))  # a mistyped user or path: one line, no traceback


def personalize(args: argparse.Namespace) -> None:
    """Steps 1 to 6 of the module docstring for ``args.user``."""
    card = ensure_corpus(Path(args.corpus_dir), preset=args.preset, seed=0)
    base_path = Path(args.base)
    if not base_path.exists():
        base_path = train_demo_base(
            DemoConfig(corpus_dir=args.corpus_dir, corpus_preset=args.preset, output_dir=args.output_dir)
        )
    checkpoint = load_checkpoint(base_path)
    vocab, feature_config = checkpoint.vocab, checkpoint.feature_config
    enroll = read_manifest(card.user_manifest(args.user, "enroll"), vocab, relabel=True)
    test = read_manifest(card.user_manifest(args.user, "test"), vocab, relabel=True)

    # the type's recipe (learning rates, epochs, batch size, sizes), as train.adapter_type= on the command line
    config = AdapterTrainConfig.for_adapter_type(
        args.adapter_type,
        base_model_path=str(base_path),
        adapter_name=args.user,
        adapter_save_dir=f"{args.output_dir}/adapters",
        output_dir=f"{args.output_dir}/run",
        num_workers=0,
        **({} if args.epochs is None else {"num_epochs": args.epochs}),
    )
    model = checkpoint.build_model()
    model.add_adapter(args.adapter_type, config=config.adapter_config())  # the recipe's sizes and dropout
    model.freeze_base_model()
    trainer = AdapterTrainer(config, vocab, feature_config, enroll, model_config=checkpoint.model_config)
    trainer.train(model, adapter_name=args.user)
    if trainer.outcome["rejected"]:
        print(f"the adapter was rejected ({trainer.outcome['rejected_reason']}): a Recognizer serves the base model")

    fresh = checkpoint.build_model()
    AdapterManager.load_adapter(
        fresh, trainer.adapter_path, vocab_fingerprint=vocab.fingerprint(), feature_config=feature_config.to_dict()
    )
    fresh.eval()
    loader = build_dataloader(test, FeatureExtractor(feature_config), 16, shuffle=False)
    base, adapted = evaluate_base_and_adapter(fresh, loader, vocab)
    info = AdapterManager.get_adapter_info(trainer.adapter_path)
    print(f"user {args.user}: {len(enroll)} enrollment / {len(test)} test utterances")
    print(
        f"adapter {info['adapter_type']} at {trainer.adapter_path} ({trainer.adapter_path.stat().st_size / 1e6:.2f} MB)"
    )
    print(
        f"trainable parameters while adapting: {trainer.parameter_stats['trainable']:,} "
        f"({trainer.parameter_stats['percent_of_base']:.2f}% of the frozen base's {trainer.parameter_stats['frozen']:,})"
    )
    print(f"test CER  base: {base.cer:.4f}   base + adapter: {adapted.cer:.4f}")
    for reference, hypothesis in adapted.pairs[:3]:
        print(f"  ref: {reference}\n  hyp: {hypothesis}")


if __name__ == "__main__":
    main()
