"""Profile base-training steps on the CPU with torch.profiler: where does a SupervisedTrainer step spend its time?

    python benchmarks/profile_train_step.py            # 4 profiled steps of 16 utterances after a warm-up
    python benchmarks/profile_train_step.py --quick    # 2 profiled steps

Times steps without the profiler first (the profiler's own overhead inflates many small ops), then profiles the same
batches and prints the operators with the most self CPU time, grouped by input shape, and the share of the
forward pieces (conv extractor vs RNN layers) measured directly. Results go to
``runs/benchmarks/profile_train_step.json``.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _bench_utils import World, base_parser, machine, print_table, write_results  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from kospeech.metrics import ErrorRateMeter  # noqa: E402
from kospeech.trainer import SupervisedTrainer, TrainConfig  # noqa: E402


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0], "runs/benchmarks/profile_train_step.json")
    parser.add_argument("--top", type=int, default=12, help="operators to list")
    args = parser.parse_args()
    world = World(args)
    num_batches = 2 if args.quick else 4
    entries = world.base_entries()[: (num_batches + 1) * 16]
    model = world.build_model()
    with tempfile.TemporaryDirectory(prefix="kospeech_bench_") as tmp:
        config = TrainConfig(output_dir=tmp, batch_size=16, num_workers=0, num_threads=torch.get_num_threads(),
                             spec_augment=True, seed=args.seed)
        record = {"input_dim": world.feature_config.feature_dim, "num_classes": len(world.vocab)}
        trainer = SupervisedTrainer(config, world.vocab, world.feature_config, entries, None, record)
        batches = list(trainer.build_loader(entries, 16, train=True))
    warm_up, batches = batches[0], batches[1 : num_batches + 1]
    optimizer = trainer._build_optimizer(model, total_steps=100)
    meter = ErrorRateMeter()
    model.train()
    trainer._train_step(model, warm_up, optimizer, meter)
    step_seconds = []
    for batch in batches:
        started = time.perf_counter()
        trainer._train_step(model, batch, optimizer, meter)
        step_seconds.append(time.perf_counter() - started)
    forward = {"conv": 0.0, "rnn": 0.0, "head": 0.0}
    with torch.no_grad():
        for batch in batches:
            started = time.perf_counter()
            hidden, lengths = model.conv(batch.inputs, batch.input_lengths)
            forward["conv"] += time.perf_counter() - started
            started = time.perf_counter()
            for layer in model.rnn_layers:
                hidden = layer(hidden, lengths)
            forward["rnn"] += time.perf_counter() - started
            started = time.perf_counter()
            model.head(hidden)
            forward["head"] += time.perf_counter() - started
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for batch in batches:
            trainer._train_step(model, batch, optimizer, meter)
    events = sorted(prof.key_averages(group_by_input_shape=True), key=lambda event: event.self_cpu_time_total,
                    reverse=True)
    total = sum(event.self_cpu_time_total for event in events)
    top = [
        {"op": event.key, "shapes": str(event.input_shapes)[:80], "calls": event.count,
         "self_cpu_seconds": round(event.self_cpu_time_total / 1e6, 4),
         "share": round(event.self_cpu_time_total / total, 4)}
        for event in events[: args.top]
    ]
    results = {
        "mode": "quick" if args.quick else "full",
        **machine(),
        **world.describe(),
        "batch_frames": [list(batch.inputs.shape[:2]) for batch in batches],
        "step_seconds": [round(value, 4) for value in step_seconds],
        "mean_step_seconds": round(statistics.mean(step_seconds), 4),
        "forward_seconds_no_grad": {key: round(value / len(batches), 4) for key, value in forward.items()},
        "profiled_self_cpu_seconds": round(total / 1e6, 3),
        "top_ops": top,
    }
    output = write_results(args.output, results)
    print(f"base training step profile ({results['mode']}, CPU, {results['torch_threads']} thread(s), load average "
          f"{results['load_average_1min']}); {world.model_description}")
    print(f"batches (B, T): {results['batch_frames']}")
    print(f"step seconds (no profiler): {results['step_seconds']}  mean {results['mean_step_seconds']:.3f}")
    print("forward without grad, per batch: " + ", ".join(
        f"{key} {value:.3f} s" for key, value in results["forward_seconds_no_grad"].items()))
    print()
    print_table(["operator", "input shapes", "calls", "self s", "share"],
                [[item["op"], item["shapes"][:48], item["calls"], f"{item['self_cpu_seconds']:.3f}",
                  f"{100 * item['share']:.1f}%"] for item in top])
    print()
    print(f"results: {output}")


if __name__ == "__main__":
    main()
