"""Data loading vs model steps in base training: is the loader ever the bottleneck?

    python benchmarks/data_loading.py           # 12 batches of 16 base-training utterances
    python benchmarks/data_loading.py --quick   # 4 batches (about a minute on 2 cores)

Three measurements with the base-training settings of ``configs/train/ds2_train.yaml`` (batch 16, SpecAugment,
``num_workers`` DataLoader workers, fbank 80 features computed from the wav files):

1. loader alone: iterate the training DataLoader without a model (audio reading, resampling, fbank, SpecAugment,
   padding) -> batches per second it can deliver;
2. trainer alone: ``SupervisedTrainer._train_step`` on the same batches already in memory -> batches per second it
   consumes;
3. together: the real loop (``next(loader)`` then the step), timing how long the trainer waits for data.

Results go to ``runs/benchmarks/data_loading.json``; the last line is ``ratio: X.XX`` = loader batches/s /
trainer batches/s (>= 2 means the loader keeps up with room to spare; the wait fraction should be near 0).
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# before torch, which imports tqdm: importing _bench_utils switches progress bars off (unless --verbose)
import _bench_utils  # noqa: E402, F401
import torch  # noqa: E402
from _bench_utils import World, base_parser, machine, print_table, write_results  # noqa: E402

from kospeech.metrics import ErrorRateMeter  # noqa: E402
from kospeech.trainer import SupervisedTrainer, TrainConfig  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0], "runs/benchmarks/data_loading.json")
    parser.add_argument("--num-workers", type=int, default=1, help="DataLoader workers (ds2_train.yaml: 1)")
    args = parser.parse_args()
    world = World(args)
    num_batches = 4 if args.quick else 12
    entries = world.base_entries()[: num_batches * 16]
    with tempfile.TemporaryDirectory(prefix="kospeech_bench_") as tmp:
        config = TrainConfig(
            output_dir=tmp,
            batch_size=16,
            num_workers=args.num_workers,
            num_threads=torch.get_num_threads(),
            spec_augment=True,
            seed=args.seed,
            device="cpu",
        )
        record = {"input_dim": world.feature_config.feature_dim, "num_classes": len(world.vocab)}
        trainer = SupervisedTrainer(config, world.vocab, world.feature_config, entries, None, record)
        loader = trainer.build_loader(entries, 16, train=True)
        # start the persistent workers before timing, with a whole untimed pass: an iterator left part-read would
        # have its prefetched batches computed and thrown away inside the timed pass below
        loader.batch_sampler.set_epoch(0)
        list(loader)
        # 1. the loader alone (epoch 1: no batch of it computed before)
        loader.batch_sampler.set_epoch(1)
        started = time.perf_counter()
        batches = list(loader)
        loader_seconds = time.perf_counter() - started
        # 2. the trainer alone, on batches already in memory
        model = world.build_model()
        optimizer = trainer._build_optimizer(model, total_steps=100)
        model.train()
        meter = ErrorRateMeter()
        trainer._train_step(model, batches[0], optimizer, meter)  # warm-up
        step_times = []
        for batch in batches:
            started = time.perf_counter()
            trainer._train_step(model, batch, optimizer, meter)
            step_times.append(time.perf_counter() - started)
        # 3. together: how long does the step loop wait in next(loader)?
        loader.batch_sampler.set_epoch(2)
        waits, steps = [], []
        iterator = iter(loader)
        loop_started = time.perf_counter()
        while True:
            started = time.perf_counter()
            batch = next(iterator, None)
            waits.append(time.perf_counter() - started)
            if batch is None:
                break
            started = time.perf_counter()
            trainer._train_step(model, batch, optimizer, meter)
            steps.append(time.perf_counter() - started)
        loop_seconds = time.perf_counter() - loop_started
    loader_rate = len(batches) / loader_seconds
    trainer_rate = len(batches) / sum(step_times)
    ratio = loader_rate / trainer_rate
    first_wait = waits[0]
    results = {
        "mode": "quick" if args.quick else "full",
        **machine(),
        **world.describe(),
        "num_workers": trainer.loader_workers,  # what ran: the trainer lowers it to fit the cores
        "batches": len(batches),
        "utterances": len(entries),
        "audio_frames_per_batch": statistics.mean(int(batch.input_lengths.sum()) for batch in batches),
        "loader_batches_per_second": round(loader_rate, 3),
        "loader_seconds_per_batch": round(1 / loader_rate, 4),
        "trainer_batches_per_second": round(trainer_rate, 3),
        "trainer_seconds_per_step": [round(value, 3) for value in step_times],
        "loop_seconds": round(loop_seconds, 3),
        "wait_seconds_total": round(sum(waits), 3),
        "wait_seconds_first_batch": round(first_wait, 3),
        "wait_fraction": round(sum(waits) / loop_seconds, 4),
        "wait_fraction_after_first_batch": round(sum(waits[1:]) / (loop_seconds - first_wait), 4),
        "ratio_loader_over_trainer": round(ratio, 3),
    }
    output = write_results(args.output, results, args)
    print(
        f"data loading vs training steps ({results['mode']}, CPU, {results['torch_threads']} thread(s), "
        f"{args.num_workers} worker(s), load average {results['load_average_1min']})"
    )
    print(f"{world.model_description}; batch 16 with SpecAugment; {len(batches)} batches")
    print()
    print_table(
        ["measure", "batches/s", "s/batch"],
        [
            ["loader alone (features + SpecAugment)", f"{loader_rate:.2f}", f"{1 / loader_rate:.3f}"],
            ["trainer step alone", f"{trainer_rate:.2f}", f"{1 / trainer_rate:.3f}"],
        ],
    )
    print()
    print(
        f"real loop: {loop_seconds:.2f} s, waiting for data {sum(waits):.3f} s "
        f"({100 * results['wait_fraction']:.1f}%; first batch {first_wait:.3f} s, after it "
        f"{100 * results['wait_fraction_after_first_batch']:.1f}%)"
    )
    print(f"results: {output}")
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
