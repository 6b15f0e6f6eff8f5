"""Personalization benchmark: base vs each adapter type vs full fine-tuning on held-out users.

For every held-out user of two groups (``users``: the built-in corpus' four users; ``challenge``: six users with
voices and channels no recipe was tuned on, see ``plan_challenge``) and every enrollment size, train each method on
the first N enrollment utterances (a seeded 10% of them held out for early stopping), then score the user's whole
test set. Each adapter type trains with exactly what ``train.adapter_type=<type>`` on the command line uses: ``head``
with the original design's YAML values (the seed's line verbatim), the others with their recipes. What a user is
*served* counts: an adapter rejected at training (no better than the base on the held-out part) serves the base.
Reports CER per user, the median relative CER reduction per group, method and size, the users served worse than the
base, the share of the base-to-full-fine-tuning gap each adapter closes, trainable parameters and training time;
and checks that the base speakers' CER is unchanged when no adapter is selected.

A third group, ``sealed`` (six users of ``plan_sealed``: voices and channel families unlike the other groups', built
like the challenge users into ``--challenge-dir``, under ``sealed/<user>/``), runs only when asked for with
``--groups sealed``. It exists because recipes were compared on some challenge users: the sealed users are measured
once, for the final word on recipes already fixed, and never used to choose a setting.

    python benchmarks/personalization.py --quick        # 1 user of each group, 25 utterances each
    python benchmarks/personalization.py                # 4 + 6 users x 10/25/50/100 utterances (long)
    python benchmarks/personalization.py --groups sealed  # the final measurement: once, after every choice

Writes runs/benchmarks/personalization/{results.json,results.md,personalization.png}.
"""

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from _bench_utils import check_base, save_figure, write_results  # noqa: E402

from kospeech.checkpoint import load_checkpoint  # noqa: E402
from kospeech.cli import setup_logging  # noqa: E402
from kospeech.cli.common import positive_int  # noqa: E402
from kospeech.data import FeatureExtractor, build_dataloader, read_manifest  # noqa: E402
from kospeech.data.synthetic import (  # noqa: E402
    build_user_sets,
    ensure_corpus,
    plan_challenge,
    plan_corpus,
    plan_sealed,
)
from kospeech.fileio import atomic_write_json, atomic_write_text  # noqa: E402
from kospeech.models import count_parameters, registered_adapter_types  # noqa: E402
from kospeech.trainer import AdapterTrainConfig, AdapterTrainer, SupervisedTrainer, TrainConfig, evaluate  # noqa: E402
from kospeech.trainer.adapter_trainer import split_holdout  # noqa: E402

ADAPTER_METHODS = ("head", "residual_head", "encoder")
GROUPS = ("users", "challenge", "sealed")
DEFAULT_GROUPS = ("users", "challenge")  # sealed: only on request, see the module docstring
BUILT_GROUPS = {"challenge": plan_challenge, "sealed": plan_sealed}  # built on request into --challenge-dir
QUICK_USERS_PER_GROUP = 1


def train_adapter(checkpoint, entries, method, args, workdir):
    """Train ``method``'s adapter as the command line would; returns (model, trainable, adapter output, rejected)."""
    model = checkpoint.build_model()
    settings = dict(
        base_model_path=str(checkpoint.path),
        adapter_name=f"bench_{method}",
        adapter_save_dir=str(workdir / "adapters"),
        output_dir=str(workdir / "run"),
        num_workers=0,
        num_threads=args.threads,
        log_every=10_000,
        seed=args.seed,
    )
    config = AdapterTrainConfig.for_adapter_type(method, **settings)
    trainer = AdapterTrainer(
        config, checkpoint.vocab, checkpoint.feature_config, entries, model_config=checkpoint.model_config
    )
    trainer.train(model, adapter_name=config.adapter_name)
    return model, trainer.parameter_stats["trainable"], True, trainer.outcome["rejected"]


def fine_tune(checkpoint, entries, args, workdir):
    model = checkpoint.build_model()
    train_entries, valid_entries = split_holdout(entries, 0.1, args.seed)
    config = TrainConfig(
        output_dir=str(workdir / "full"),
        num_epochs=args.epochs,
        batch_size=16,
        num_workers=0,
        warmup_steps=10,
        init_lr=1e-5,
        peak_lr=args.full_lr,
        final_lr=1e-5,
        spec_augment=False,
        num_threads=args.threads,
        log_every=10_000,
        checkpoint_every=0,
        seed=args.seed,
    )
    trainer = SupervisedTrainer(
        config, checkpoint.vocab, checkpoint.feature_config, train_entries, valid_entries, checkpoint.model_config
    )
    trainer.train(model)
    return model.eval(), count_parameters(model)["total"], False, False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="pretrained/ds2_synthetic.pt")
    parser.add_argument("--corpus-dir", default="data/corpus_demo")
    parser.add_argument("--preset", default="demo")
    parser.add_argument(
        "--challenge-dir", default="data/demo_users", help="where the challenge (and sealed) users are built"
    )
    # nargs "+" (not "*"): an empty list is refused here rather than found after the corpus is set up
    parser.add_argument("--groups", nargs="+", default=list(DEFAULT_GROUPS), choices=GROUPS)
    parser.add_argument("--users", nargs="*", default=None, help="only these users (of any group)")
    parser.add_argument("--sizes", nargs="+", type=positive_int, default=[10, 25, 50, 100])
    parser.add_argument(
        "--methods", nargs="+", default=[*ADAPTER_METHODS, "full"], choices=[*registered_adapter_types(), "full"]
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=15, help="full fine-tuning epochs (adapters: their recipes)"
    )
    parser.add_argument("--full-lr", type=float, default=2e-4)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="1 user per group, 25 enrollment utterances")
    parser.add_argument("--output-dir", default="runs/benchmarks/personalization")
    args = parser.parse_args()
    check_base(args.base)
    if args.quick:
        args.sizes = [25]
    setup_logging()
    torch.set_num_threads(args.threads)

    card = ensure_corpus(Path(args.corpus_dir), preset=args.preset, seed=0)
    checkpoint = load_checkpoint(args.base)
    vocab, extractor = checkpoint.vocab, FeatureExtractor(checkpoint.feature_config)
    manifests = {}
    if "users" in args.groups:
        manifests["users"] = {
            user: {split: card.user_manifest(user, split) for split in ("enroll", "test")}
            for user in sorted(card.users)
        }
    planned = {
        group: plan_group(plan_corpus(card.preset, card.seed, **dataclasses.asdict(card.sizes)))[0]
        for group, plan_group in BUILT_GROUPS.items()
        if group in args.groups
    }
    known = {user.user_id for group_users in planned.values() for user in group_users}
    unknown = sorted(set(args.users or ()) - known - set(card.users if "users" in args.groups else ()))
    if unknown:  # refused before any user is synthesized: a mistyped name is otherwise just left out
        parser.error(f"--users {' '.join(unknown)}: not users of --groups {' '.join(args.groups)}")
    for group, group_users in planned.items():
        wanted = sorted(user.user_id for user in group_users if not args.users or user.user_id in args.users)
        wanted = wanted[:QUICK_USERS_PER_GROUP] if args.quick else wanted  # only the users measured are synthesized
        manifests[group] = (
            build_user_sets(args.challenge_dir, vocab, users=wanted, group=group, corpus=card.root) if wanted else {}
        )
    for group in manifests:
        names = [name for name in sorted(manifests[group]) if not args.users or name in args.users]
        manifests[group] = {
            name: manifests[group][name] for name in names[: QUICK_USERS_PER_GROUP if args.quick else None]
        }
    enrolled = {
        (group, user): read_manifest(paths["enroll"], vocab, relabel=True)
        for group, users in manifests.items()
        for user, paths in users.items()
    }
    short = {
        f"{group}/{user}": len(entries) for (group, user), entries in enrolled.items() if len(entries) < max(args.sizes)
    }
    if short:  # refused before hours of training: the tables are by enrollment size
        parser.error(f"--sizes up to {max(args.sizes)}, but these users enrolled fewer utterances: {short}")
    base_model = checkpoint.build_model()

    def test_cer(model, entries, adapter_output):
        loader = build_dataloader(entries, extractor, 16, shuffle=False)
        return evaluate(model, loader, vocab, use_adapter_output=adapter_output).cer

    rows = []
    started = time.monotonic()
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # every finished cell at once, so an interrupted run of hours keeps what it measured
    partial = output_dir / "rows.partial.json"
    for group, user, paths in [(g, u, p) for g, users in manifests.items() for u, p in users.items()]:
        enroll = enrolled[group, user]
        test = read_manifest(paths["test"], vocab, relabel=True)
        base_cer = test_cer(base_model, test, False)
        for size in args.sizes:
            subset = enroll[:size]
            for method in args.methods:
                with tempfile.TemporaryDirectory() as workdir:
                    torch.manual_seed(args.seed)
                    clock = time.monotonic()
                    if method == "full":
                        model, trainable, adapter_output, rejected = fine_tune(checkpoint, subset, args, Path(workdir))
                    else:
                        model, trainable, adapter_output, rejected = train_adapter(
                            checkpoint, subset, method, args, Path(workdir)
                        )
                    seconds = time.monotonic() - clock
                    trained_cer = test_cer(model, test, adapter_output)
                cer = base_cer if rejected else trained_cer  # a rejected adapter is not served: the base is
                rows.append(
                    {
                        "group": group,
                        "user": user,
                        "size": len(subset),
                        "method": method,
                        "base_cer": base_cer,
                        "cer": cer,
                        "trained_cer": trained_cer,
                        "rejected": rejected,
                        "relative_reduction": (base_cer - cer) / base_cer if base_cer else 0.0,
                        "trainable_params": trainable,
                        "train_seconds": round(seconds, 1),
                    }
                )
                print(
                    f"{group}/{user} n={len(subset):<3} {method:<13} base {base_cer:.3f} -> {cer:.3f} "
                    f"({rows[-1]['relative_reduction'] * 100:+.1f}%){' rejected' if rejected else ''} {seconds:.0f}s",
                    flush=True,
                )
                atomic_write_json(partial, rows)

    base_test = read_manifest(card.base_manifest("test"), vocab, relabel=True)
    plain_cer = test_cer(base_model, base_test, False)
    with_adapter = checkpoint.build_model()
    with_adapter.add_adapter("encoder", bottleneck_dim=32)
    torch.nn.init.normal_(next(p for n, p in with_adapter.named_parameters() if "adapter" in n and "up" in n))
    with with_adapter.disable_adapter():
        unselected_cer = test_cer(with_adapter, base_test, False)

    total_params = count_parameters(base_model)["total"]
    summary = {
        group: summarize([r for r in rows if r["group"] == group], args.methods, args.sizes, total_params)
        for group in manifests
    }
    report = {
        "base": str(args.base),
        "users": {group: sorted(users) for group, users in manifests.items()},
        "sizes": args.sizes,
        "full_fine_tuning_epochs": args.epochs,
        "rows": rows,
        "summary": summary,
        "base_speakers_cer": plain_cer,
        "base_speakers_cer_adapter_attached_unselected": unselected_cer,
        "total_params": total_params,
        "seconds": round(time.monotonic() - started, 1),
        "quick": args.quick,
    }
    write_results(output_dir / "results.json", report, args)
    partial.unlink()
    markdown = "\n\n".join(
        f"### {group} ({len(manifests[group])} users)\n\n" + to_markdown(summary[group], args.methods, args.sizes)
        for group in summary
        if summary[group]
    )
    atomic_write_text(output_dir / "results.md", markdown + "\n")
    plot(summary, args.methods, args.sizes, output_dir / "personalization.png")
    print()
    print(markdown)
    print(
        f"\nbase speakers' test CER: {plain_cer:.4f} plain, {unselected_cer:.4f} with an adapter attached but "
        f"not selected ({'unchanged' if plain_cer == unselected_cer else 'CHANGED'})"
    )
    print(f"written: {output_dir}/results.json, results.md, personalization.png")


def summarize(rows, methods, sizes, total_params):
    summary = {}
    for method in methods:
        summary[method] = {}
        for size in sizes:
            cells = [r for r in rows if r["method"] == method and r["size"] == size]
            if not cells:
                continue
            gap_closed = []
            for cell in cells:
                full = [r for r in rows if r["method"] == "full" and r["size"] == size and r["user"] == cell["user"]]
                if full and cell["base_cer"] > full[0]["cer"]:
                    gap_closed.append((cell["base_cer"] - cell["cer"]) / (cell["base_cer"] - full[0]["cer"]))
            summary[method][str(size)] = {
                "median_relative_reduction": statistics.median(c["relative_reduction"] for c in cells),
                "median_cer": statistics.median(c["cer"] for c in cells),
                "median_base_cer": statistics.median(c["base_cer"] for c in cells),
                "median_gap_closed": statistics.median(gap_closed) if gap_closed else None,
                "trainable_params": cells[0]["trainable_params"],
                "trainable_percent": 100.0 * cells[0]["trainable_params"] / total_params,
                "median_train_seconds": statistics.median(c["train_seconds"] for c in cells),
                "users_served_worse": sorted(c["user"] for c in cells if c["cer"] > c["base_cer"]),
                "users_rejected": sorted(c["user"] for c in cells if c["rejected"]),
            }
    return summary


def to_markdown(summary, methods, sizes):
    lines = [
        "| method | trainable (% of base) | "
        + " | ".join(f"n={s}: CER / rel. red. / gap closed" for s in sizes)
        + " | train s (n=max) | served worse / rejected (n=max) |",
        "|---|---|" + "---|" * len(sizes) + "---|---|",
    ]
    for method in methods:
        cells = []
        for size in sizes:
            cell = summary[method].get(str(size))
            if cell is None:
                cells.append("–")
                continue
            gap = (
                "–"
                if cell["median_gap_closed"] is None or method == "full"
                else f"{cell['median_gap_closed'] * 100:.0f}%"
            )
            cells.append(f"{cell['median_cer']:.3f} / {cell['median_relative_reduction'] * 100:+.0f}% / {gap}")
        last = summary[method][str(max(sizes))]
        lines.append(
            f"| {method} | {last['trainable_params']:,} ({last['trainable_percent']:.1f}%) | "
            + " | ".join(cells)
            + f" | {last['median_train_seconds']:.0f} | {len(last['users_served_worse'])} / {len(last['users_rejected'])} |"
        )
    base = summary[methods[0]][str(max(sizes))]["median_base_cer"]
    lines.append(f"\nmedian base CER on the users' test sets: {base:.3f}")
    return "\n".join(lines)


def plot(summary, methods, sizes, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [group for group in summary if summary[group]]
    figure, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4), squeeze=False)
    for axis, group in zip(axes[0], groups):
        for method in methods:
            cells = summary[group][method]
            points = [(s, cells[str(s)]["median_cer"]) for s in sizes if str(s) in cells]
            axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
        base = summary[group][methods[0]][str(max(sizes))]["median_base_cer"]
        axis.axhline(base, color="gray", linestyle="--", label="base")
        axis.set(xlabel="enrollment utterances", ylabel="median test CER", title=f"{group}", xscale="log")
        axis.set_xticks(sizes, [str(s) for s in sizes])
        axis.legend()
    figure.tight_layout()
    save_figure(figure, path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    main()
