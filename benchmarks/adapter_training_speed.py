"""Adapter training speed: cached trunk vs recomputing the frozen base every epoch, side by side in one run.

    python benchmarks/adapter_training_speed.py            # demo user01, all enrollment utterances, 4 epochs
    python benchmarks/adapter_training_speed.py --quick    # 32 utterances, 2 epochs (about 20 s on 2 cores)

Both runs train the same ``head`` adapter ([512, 256], as adapter_train.yaml) with the same seed on the demo
corpus' user01 without SpecAugment, so they follow the same loss trajectory (checked and reported). The ``head``
recipe's warm start and alignment steps (before the CTC epochs) are left out of both: what is compared is the epoch. Reported per
run: mean wall seconds per epoch (steps, then validation on the held-out part and saving an improved adapter), the
steps alone (features, trunk if uncached, adapter forward/backward, optimizer), the one-time cache build, and the
whole ``train()`` call.
Results go to ``runs/benchmarks/adapter_training_speed.json``; the last line is ``ratio: X.XX`` = uncached wall seconds
per epoch / cached wall seconds per epoch.
"""

import copy
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# before torch, which imports tqdm: importing _bench_utils switches progress bars off (unless --verbose)
import _bench_utils  # noqa: E402, F401
import torch  # noqa: E402
from _bench_utils import World, base_parser, device_label, machine, print_table, timed, write_results  # noqa: E402

from kospeech.trainer import AdapterTrainConfig, AdapterTrainer  # noqa: E402


class _TimedAdapterTrainer(AdapterTrainer):
    """Records when training starts (after the cache build and the base evaluation) and when each epoch ends."""

    def _on_train_start(self, model, valid_loader) -> None:
        super()._on_train_start(model, valid_loader)
        self.marks = [time.perf_counter()]

    def _end_of_epoch(self, model, optimizer, valid_loader, train_figures) -> bool:
        stop = super()._end_of_epoch(model, optimizer, valid_loader, train_figures)
        self.marks.append(time.perf_counter())
        return stop


def run(world: World, entries, cache_trunk: bool, epochs: int, adapter_type: str, root: Path) -> dict:
    model = world.build_model()
    config = AdapterTrainConfig(
        base_model_path="unused",
        output_dir=str(root / f"run_{cache_trunk}"),
        adapter_save_dir=str(root / "adapters"),
        adapter_type=adapter_type,
        batch_size=16,
        num_epochs=epochs,
        num_workers=0,
        warmup_steps=10,
        peak_lr=2e-3,
        init_lr=1e-4,
        final_lr=1e-4,
        early_stopping_patience=epochs + 1,
        num_threads=torch.get_num_threads(),
        seed=world.seed,
        cache_trunk=cache_trunk,
        # the head's warm start and alignment steps are off: the ratio is per CTC epoch, and recomputing the trunk for
        # their 150 steps took the uncached run of --quick from about a minute to over ten (3.4 s a step)
        warm_start_steps=0,
        alignment_steps=0,
        log_every=10_000,
        device=str(world.device),
    )
    trainer = _TimedAdapterTrainer(config, world.vocab, world.feature_config, copy.copy(entries))
    seconds, _ = timed(lambda: trainer.train(model, adapter_name=f"bench_{cache_trunk}"))
    history = trainer.state.history
    elapsed = [0.0] + [record["elapsed_seconds"] for record in history]
    per_epoch = [after - before for before, after in zip(elapsed, elapsed[1:])]
    whole_epochs = [after - before for before, after in zip(trainer.marks, trainer.marks[1:])]
    return {
        "cache_trunk": cache_trunk,
        "epochs": len(history),
        "seconds_per_epoch": statistics.mean(whole_epochs),
        "epoch_seconds": [round(value, 3) for value in whole_epochs],
        "train_loop_seconds_per_epoch": statistics.mean(per_epoch),
        "train_call_seconds": seconds,
        "train_losses": [record["train_loss"] for record in history],
        "valid_cer": [record["valid_cer"] for record in history],
        "cache": trainer.cache_info,
        "train_utterances": len(trainer.train_entries),
        "adapter": dataclasses.asdict(config.adapter_config()),
    }


def _describe(adapter_type: str, adapter: dict) -> str:
    """``head [512, 256]``, ``encoder (bottleneck 64, extractor 32)``: the adapter the runs trained."""
    if "hidden_dims" in adapter:
        return f"{adapter_type} {adapter['hidden_dims']}"
    return f"{adapter_type} (bottleneck {adapter['bottleneck_dim']}, extractor {adapter['extractor_bottleneck_dim']})"


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0], "runs/benchmarks/adapter_training_speed.json", device_option=True)
    parser.add_argument("--user", default="user01")
    parser.add_argument("--adapter-type", default="head", choices=["head", "residual_head", "encoder"])
    # the spec's DeepSpeech2 (5 x 512): the trunk the cache exists for; --model small or --base for others
    parser.set_defaults(model="full")
    args = parser.parse_args()
    world = World(args)
    entries = world.enrollment(args.user)
    epochs = 2 if args.quick else 4
    if args.quick:
        entries = entries[:32]
    world.warm_up_device()
    with tempfile.TemporaryDirectory(prefix="kospeech_bench_") as tmp:
        cached = run(world, entries, True, epochs, args.adapter_type, Path(tmp))
        uncached = run(world, entries, False, epochs, args.adapter_type, Path(tmp))
    ratio = uncached["seconds_per_epoch"] / cached["seconds_per_epoch"]
    loop_ratio = uncached["train_loop_seconds_per_epoch"] / cached["train_loop_seconds_per_epoch"]
    loss_gap = max(abs(a - b) for a, b in zip(cached["train_losses"], uncached["train_losses"]))
    results = {
        "mode": "quick" if args.quick else "full",
        "note": "speed only; random weights unless --base",
        **machine(world.device),
        **world.describe(),
        "user": args.user,
        "adapter_type": args.adapter_type,
        "adapter": cached["adapter"],
        "batch_size": 16,
        "cached": cached,
        "uncached": uncached,
        "max_train_loss_difference": loss_gap,
        "cache_build_seconds": cached["cache"].get("build_seconds"),
        "ratio_seconds_per_epoch": round(ratio, 3),
        "ratio_train_loop_per_epoch": round(loop_ratio, 3),
        "ratio_whole_train_call": round(uncached["train_call_seconds"] / cached["train_call_seconds"], 3),
    }
    output = write_results(args.output, results, args)
    print(
        f"adapter training speed ({results['mode']}, {device_label(results)}, {results['torch_threads']} thread(s), "
        f"load average {results['load_average_1min']})"
    )
    print(
        f"{world.model_description}; {_describe(args.adapter_type, cached['adapter'])} adapter; user {args.user}, "
        f"{cached['train_utterances']} training utterances, batch 16, {epochs} epochs"
    )
    print()
    rows = []
    for name, figures in (("cached trunk", cached), ("uncached", uncached)):
        losses = " ".join(f"{loss:.4f}" for loss in figures["train_losses"])
        rows.append(
            [
                name,
                f"{figures['seconds_per_epoch']:.3f}",
                f"{figures['train_loop_seconds_per_epoch']:.3f}",
                f"{figures['train_call_seconds']:.2f}",
                losses,
            ]
        )
    print_table(["run", "s/epoch", "steps s/epoch", "train() s", "train loss per epoch"], rows)
    print()
    print(f"max |train loss cached - uncached| over epochs: {loss_gap:.2e}")
    print(f"steps alone (no validation): {loop_ratio:.2f}x")
    print(
        f"one-time cache build: {results['cache_build_seconds']:.2f} s; whole train() call (build, validation "
        f"and saving included): {results['ratio_whole_train_call']:.2f}x"
    )
    print(f"results: {output}")
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
