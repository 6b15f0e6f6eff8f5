"""Profile base-training steps on the CPU with torch.profiler: where does a SupervisedTrainer step spend its time?

    python benchmarks/profile_train_step.py            # 4 profiled steps of 16 utterances after a warm-up
    python benchmarks/profile_train_step.py --quick    # 2 profiled steps

Times steps without the profiler first (the profiler's own overhead inflates many small ops), once with the RNN layers'
packed path (how every step ran before: ``BNReluRNN.padded_cpu_training = False``) and once with the default padded
per-direction CPU path, from the same weights and seed on the same batches; then profiles the default path and prints
the operators with the most self CPU time, grouped by input shape, and the share of the forward pieces (conv
extractor vs RNN layers) measured directly. Results go to
``runs/benchmarks/profile_train_step.json``; the last line is ``ratio: X.XX`` = packed step seconds / default step
seconds.
"""

import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the profiler's own C++ logger (Kineto) prints start/stop markers and, on a machine without a GPU, an error about
# the GPU count; above its highest level it stays quiet (an explicit setting in the environment wins)
os.environ.setdefault("KINETO_LOG_LEVEL", "6")

# before torch, which imports tqdm: importing _bench_utils switches progress bars off (unless --verbose)
import _bench_utils  # noqa: E402, F401
import torch  # noqa: E402
from _bench_utils import World, base_parser, machine, print_table, write_results  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from kospeech.metrics import ErrorRateMeter  # noqa: E402
from kospeech.models import BNReluRNN  # noqa: E402
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
        config = TrainConfig(
            output_dir=tmp,
            batch_size=16,
            num_workers=0,
            num_threads=torch.get_num_threads(),
            spec_augment=True,
            seed=args.seed,
            device="cpu",
        )
        record = {"input_dim": world.feature_config.feature_dim, "num_classes": len(world.vocab)}
        trainer = SupervisedTrainer(config, world.vocab, world.feature_config, entries, None, record)
        batches = list(trainer.build_loader(entries, 16, train=True))
    warm_up, batches = batches[0], batches[1 : num_batches + 1]
    initial_state = copy.deepcopy(model.state_dict())

    def time_steps(padded: bool) -> list:
        """Seconds per step over ``batches`` from the same initial weights, with one RNN path."""
        BNReluRNN.padded_cpu_training = padded
        model.load_state_dict(initial_state)
        torch.manual_seed(args.seed)  # the same dropout masks on both paths
        optimizer = trainer._build_optimizer(model, total_steps=100)
        model.train()
        trainer._train_step(model, warm_up, optimizer, ErrorRateMeter())
        seconds = []
        for batch in batches:
            started = time.perf_counter()
            trainer._train_step(model, batch, optimizer, ErrorRateMeter())
            seconds.append(time.perf_counter() - started)
        return seconds

    packed_seconds = time_steps(padded=False)
    packed_weights = copy.deepcopy(model.state_dict())
    step_seconds = time_steps(padded=True)
    weight_gap = max(
        float((packed_weights[key].float() - value.float()).abs().max()) for key, value in model.state_dict().items()
    )
    optimizer = trainer._build_optimizer(model, total_steps=100)
    meter = ErrorRateMeter()
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
    events = sorted(
        prof.key_averages(group_by_input_shape=True), key=lambda event: event.self_cpu_time_total, reverse=True
    )
    total = sum(event.self_cpu_time_total for event in events)
    top = [
        {
            "op": event.key,
            "shapes": str(event.input_shapes)[:80],
            "calls": event.count,
            "self_cpu_seconds": round(event.self_cpu_time_total / 1e6, 4),
            "share": round(event.self_cpu_time_total / total, 4),
        }
        for event in events[: args.top]
    ]
    results = {
        "mode": "quick" if args.quick else "full",
        **machine(),
        **world.describe(),
        "batch_frames": [list(batch.inputs.shape[:2]) for batch in batches],
        "step_seconds": [round(value, 4) for value in step_seconds],
        "mean_step_seconds": round(statistics.mean(step_seconds), 4),
        "packed_rnn_step_seconds": [round(value, 4) for value in packed_seconds],
        "packed_rnn_mean_step_seconds": round(statistics.mean(packed_seconds), 4),
        "max_weight_difference_after_steps": weight_gap,
        "ratio_packed_over_default": round(statistics.mean(packed_seconds) / statistics.mean(step_seconds), 3),
        "forward_seconds_no_grad": {key: round(value / len(batches), 4) for key, value in forward.items()},
        "profiled_self_cpu_seconds": round(total / 1e6, 3),
        "top_ops": top,
    }
    output = write_results(args.output, results, args)
    print(
        f"base training step profile ({results['mode']}, CPU, {results['torch_threads']} thread(s), load average "
        f"{results['load_average_1min']}); {world.model_description}"
    )
    print(f"batches (B, T): {results['batch_frames']}")
    print(
        f"step seconds (no profiler), packed RNN backward (before): {results['packed_rnn_step_seconds']}  mean "
        f"{results['packed_rnn_mean_step_seconds']:.3f}"
    )
    print(
        f"step seconds (no profiler), padded per-direction RNN (default): {results['step_seconds']}  mean "
        f"{results['mean_step_seconds']:.3f}"
    )
    print(f"max |weight difference| after the same steps on both paths: {weight_gap:.1e}")
    print(
        "forward without grad, per batch: "
        + ", ".join(f"{key} {value:.3f} s" for key, value in results["forward_seconds_no_grad"].items())
    )
    print()
    print_table(
        ["operator", "input shapes", "calls", "self s", "share"],
        [
            [
                item["op"],
                item["shapes"][:48],
                item["calls"],
                f"{item['self_cpu_seconds']:.3f}",
                f"{100 * item['share']:.1f}%",
            ]
            for item in top
        ],
    )
    print()
    print(f"results: {output}")
    print(f"ratio: {results['ratio_packed_over_default']:.2f}")


if __name__ == "__main__":
    main()
