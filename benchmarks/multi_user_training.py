"""Many users' adapters in one process vs N sequential runs of the single-user job, side by side in one run.

    python benchmarks/multi_user_training.py            # 8 users x 48 utterances, 3 epochs
    python benchmarks/multi_user_training.py --quick    # 8 users x 12 utterances, 2 epochs (about a minute)
    python benchmarks/multi_user_training.py --device cuda

The 8 users are the demo corpus' 4 users, each enrollment set cut in two halves; every side uses the same adapter
settings (the ``encoder`` recipe with bottleneck 32, no speed perturbation, batch 16, the default trunk cache, no
workers, the same seed, no early stopping). The in-process rows also record this process' CPU seconds per side.

The headline (``ratio``) is what a user sees: N runs of the single-user job (``bin/main.py train=adapter_train``, one
process each: start-up, checkpoint loading, cache build, training) one after the other vs one ``bin/train_adapters.py``
run over the folder of the N users' manifests. Two in-process rows isolate what sharing the base saves once start-up
is taken out:

- trunk cache: ``AdapterTrainer(...).train(...)`` per user in turn vs ``MultiUserAdapterTrainer`` (one cache build over
  all users' utterances in mixed batches, then every step runs all users' batches side by side through the frozen
  RNN layers, each row through its own user's adapter, ``users_side_by_side=true``); its ratio is printed as
  ``in_process_ratio:``;
- the same with the device's default (``users_side_by_side=null``: in turn on a CPU, side by side on a GPU);
- SpecAugment (no training cache): one trunk forward per user and step vs one per step for all users (the device's
  default for the steps above it).

``--quick`` measures the headline alone (the in-process rows need the full mode).

Each in-process user's adapter is checked against its sequential twin (max weight difference).
Results go to ``runs/benchmarks/multi_user_training.json``; the last line is ``ratio: X.XX`` = seconds of the N
single-user runs / seconds of the one multi-user run.
"""

import copy
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

# before torch, which imports tqdm: importing _bench_utils switches progress bars off (unless --verbose)
import _bench_utils  # noqa: E402, F401
import torch  # noqa: E402
from _bench_utils import World, base_parser, device_label, machine, print_table, timed, write_results  # noqa: E402

from kospeech.checkpoint import save_checkpoint  # noqa: E402
from kospeech.data.manifest import write_manifest  # noqa: E402
from kospeech.trainer import AdapterTrainConfig, AdapterTrainer  # noqa: E402
from kospeech.trainer.multi_user import MultiUserAdapterTrainer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NUM_USERS = 8


def make_users(world: World, per_user: int):
    users = {}
    for name in world.users():
        entries = world.enrollment(name)
        half = len(entries) // 2
        users[f"{name}a"] = entries[:half][:per_user]
        users[f"{name}b"] = entries[half:][:per_user]
    return dict(list(users.items())[:NUM_USERS])


def config_for(
    root: Path, epochs: int, spec_augment: bool, seed: int, device: str, side_by_side: Optional[bool] = None
) -> AdapterTrainConfig:
    # the encoder recipe with the CLI runs' settings (processes()' ``common``): every row trains the same adapters
    return AdapterTrainConfig.for_adapter_type(
        "encoder",
        base_model_path="unused",
        output_dir=str(root / "runs"),
        adapter_save_dir=str(root / "adapters"),
        adapter_bottleneck_dim=32,
        alignment_steps=0,
        speed_perturbation=[],
        batch_size=16,
        num_epochs=epochs,
        num_workers=0,
        warmup_steps=3,
        peak_lr=2e-3,
        early_stopping_patience=epochs + 1,
        num_threads=torch.get_num_threads(),
        seed=seed,
        spec_augment=spec_augment,
        users_side_by_side=side_by_side,
        log_every=10_000,
        device=device,
    )


def sequential(world: World, users, config: AdapterTrainConfig, root: Path):
    adapters = {}
    for name, entries in users.items():
        model = world.build_model()
        torch.manual_seed(config.seed)
        model.add_adapter(config.adapter_type, config=config.adapter_config())
        user_config = AdapterTrainConfig(
            **{
                **config.__dict__,
                "adapter_name": name,
                "output_dir": str(root / "sequential" / name),
                "adapter_save_dir": str(root / "sequential_adapters"),
            }
        )
        AdapterTrainer(user_config, world.vocab, world.feature_config, entries).train(model, adapter_name=name)
        adapters[name] = copy.deepcopy(model.adapter_state_dict())
    return adapters


def one_process(world: World, users, config: AdapterTrainConfig):
    trainer = MultiUserAdapterTrainer(config, world.vocab, world.feature_config, users)
    trainer.train(world.build_model())
    return {name: adapter.state_dict() for name, adapter in trainer.adapters.items()}, trainer.cache_seconds


def max_difference(first, second) -> float:
    return max(float((first[user][key] - second[user][key]).abs().max()) for user in first for key in first[user])


def compare(
    world: World, users, epochs: int, spec_augment: bool, seed: int, root: Path, side_by_side: Optional[bool]
) -> dict:
    config = config_for(root, epochs, spec_augment, seed, str(world.device))
    cpu = time.process_time()
    sequential_seconds, sequential_adapters = timed(lambda: sequential(world, users, config, root))
    sequential_cpu, cpu = time.process_time() - cpu, time.process_time()
    config = config_for(root / "multi", epochs, spec_augment, seed, str(world.device), side_by_side)
    multi_seconds, (multi_adapters, cache_seconds) = timed(lambda: one_process(world, users, config))
    multi_cpu = time.process_time() - cpu
    steps = {True: "users side by side", False: "users in turn", None: "the device's default steps"}[side_by_side]
    return {
        "regime": f"{'SpecAugment, shared trunk forward per step' if spec_augment else 'trunk cache'}, {steps}",
        "users_side_by_side": side_by_side,
        "sequential_seconds": round(sequential_seconds, 3),
        "one_process_seconds": round(multi_seconds, 3),
        "one_process_cache_build_seconds": round(cache_seconds, 3),
        "ratio": round(sequential_seconds / multi_seconds, 3),
        # this process' CPU time: what other processes on the machine disturb far less than wall seconds
        "sequential_cpu_seconds": round(sequential_cpu, 3),
        "one_process_cpu_seconds": round(multi_cpu, 3),
        "cpu_ratio": round(sequential_cpu / multi_cpu, 3),
        "max_adapter_weight_difference": max_difference(multi_adapters, sequential_adapters),
    }


def processes(world: World, users, epochs: int, root: Path) -> dict:
    """N single-user CLI runs vs one multi-user CLI run (start-up, checkpoint loading and everything included)."""
    model = world.build_model()
    base = save_checkpoint(
        root / "base.pt",
        model,
        model_config=world.base_record(),
        vocab=world.vocab,
        feature_config=world.feature_config,
    )
    world.vocab.to_csv(root / "vocab.csv")
    for name, entries in users.items():
        write_manifest(root / "users" / f"{name}.tsv", entries)
    common = [
        "train.adapter_type=encoder",
        "train.adapter_bottleneck_dim=32",
        "train.alignment_steps=0",
        "train.speed_perturbation=[]",
        f"train.num_epochs={epochs}",
        "train.batch_size=16",
        "train.num_workers=0",
        f"train.num_threads={torch.get_num_threads()}",
        f"train.early_stopping_patience={epochs + 1}",
        "train.warmup_steps=3",
        "train.peak_lr=2e-3",
        f"train.device={world.device}",
    ]
    started = time.perf_counter()
    for name in users:
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "bin" / "main.py"),
                "--config-name=train",
                "train=adapter_train",
                f"train.base_model_path={base}",
                f"train.adapter_name={name}",
                f"train.adapter_save_dir={root / 'cli_a'}",
                f"train.output_dir={root / 'cli_runs' / name}",
                f"data.train_manifest={root / 'users' / (name + '.tsv')}",
                f"data.vocab_path={root / 'vocab.csv'}",
                *common,
            ],
            check=True,
            capture_output=True,
            cwd=root,
        )
    separate = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bin" / "train_adapters.py"),
            "--users-dir",
            str(root / "users"),
            "--base-model",
            str(base),
            "--adapter-save-dir",
            str(root / "cli_b"),
            "--output-dir",
            str(root / "cli_multi"),
            *common,
        ],
        check=True,
        capture_output=True,
        cwd=root,
    )
    together = time.perf_counter() - started
    return {
        "separate_processes_seconds": round(separate, 3),
        "one_process_seconds": round(together, 3),
        "ratio": round(separate / together, 3),
    }


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0], "runs/benchmarks/multi_user_training.json", device_option=True)
    args = parser.parse_args()
    world = World(args)
    per_user, epochs = (12, 2) if args.quick else (48, 3)
    users = make_users(world, per_user)
    with tempfile.TemporaryDirectory(prefix="kospeech_bench_") as tmp:
        root = Path(tmp)
        process_level = processes(world, users, epochs, root / "processes")
        regimes = []
        if not args.quick:  # --quick measures the headline alone, to stay near a minute
            world.warm_up_device()
            # a process' first optimizer imports torch._dynamo (about a second): not in the first timed side
            torch.optim.Adam([torch.zeros(1, requires_grad=True)])
            regimes.append(compare(world, users, epochs, False, args.seed, root / "cached", side_by_side=True))
            regimes.append(compare(world, users, epochs, False, args.seed, root / "default", side_by_side=None))
            regimes.append(compare(world, users, epochs, True, args.seed, root / "specaug", side_by_side=None))
    results = {
        "mode": "quick" if args.quick else "full",
        "note": "speed only; random weights unless --base",
        **machine(world.device),
        **world.describe(),
        "num_users": len(users),
        "utterances_per_user": {name: len(entries) for name, entries in users.items()},
        "epochs": epochs,
        "adapter": "encoder, bottleneck 32",
        "process_level": process_level,
        "regimes": regimes,
        "in_process_ratio": regimes[0]["ratio"] if regimes else None,
        "ratio": process_level["ratio"],
    }
    output = write_results(args.output, results, args)
    print(
        f"multi-user adapter training ({results['mode']}, {device_label(results)}, "
        f"{results['torch_threads']} thread(s), load average {results['load_average_1min']})"
    )
    print(f"{world.model_description}; {len(users)} users x {per_user} utterances, {epochs} epochs, batch 16")
    print()
    rows = [
        [
            "N single-user CLI runs vs one multi-user CLI run",
            f"{process_level['separate_processes_seconds']:.2f}",
            f"{process_level['one_process_seconds']:.2f}",
            f"{process_level['ratio']:.2f}",
            "-",
        ]
    ]
    rows += [
        [
            f"in one process: {regime['regime']}",
            f"{regime['sequential_seconds']:.2f}",
            f"{regime['one_process_seconds']:.2f}",
            f"{regime['ratio']:.2f}",
            f"{regime['max_adapter_weight_difference']:.1e}",
        ]
        for regime in regimes
    ]
    print_table(["comparison", "sequential s", "together s", "ratio", "max |dW|"], rows)
    print()
    print(f"results: {output}")
    if regimes:
        print(f"in_process_ratio: {regimes[0]['ratio']:.2f}")
    print(f"ratio: {process_level['ratio']:.2f}")


if __name__ == "__main__":
    main()
