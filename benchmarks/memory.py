"""Peak memory (RSS) of adapter training and of inference, each phase in a fresh process.

    python benchmarks/memory.py           # demo user01: all enrollment utterances, 3 epochs; 40 test files
    python benchmarks/memory.py --quick   # 32 utterances, 1 epoch; 8 test files (about a minute on 2 cores)

Phases (each run as ``python benchmarks/memory.py --phase NAME`` in its own process, so each peak is its own):

- ``imports``: the process after importing torch and kospeech and building the base (the floor of every phase);
- ``train_cached``: adapter training with the trunk cache (the default);
- ``train_uncached``: the same with ``cache_trunk=false``;
- ``inference``: ``Recognizer`` transcribing the user's test files with the user's adapter file.

Peak RSS is ``getrusage(RUSAGE_SELF).ru_maxrss``. Results go to ``runs/benchmarks/memory.json``; ``peak_rss_mb`` is
the largest peak of the table, and the last line is ``ratio: X.XX`` = cached training's peak above the import floor
over uncached training's (what the trunk cache costs in memory).
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# before torch, which imports tqdm: importing _bench_utils switches progress bars off (unless --verbose)
import _bench_utils  # noqa: E402, F401
import torch  # noqa: E402
from _bench_utils import World, base_parser, machine, peak_rss_mb, print_table, write_results  # noqa: E402

from kospeech.checkpoint import save_checkpoint  # noqa: E402
from kospeech.inference import Recognizer  # noqa: E402
from kospeech.models import AdapterManager  # noqa: E402
from kospeech.trainer import AdapterTrainConfig, AdapterTrainer  # noqa: E402

PHASES = ("imports", "train_cached", "train_uncached", "inference")


def train(world: World, args, root: Path, cache_trunk: bool) -> dict:
    entries = world.enrollment(args.user)[: 32 if args.quick else None]
    config = AdapterTrainConfig(
        base_model_path="unused",
        output_dir=str(root / "run"),
        adapter_save_dir=str(root / "adapters"),
        batch_size=16,
        num_epochs=1 if args.quick else 3,
        num_workers=0,
        num_threads=torch.get_num_threads(),
        cache_trunk=cache_trunk,
        log_every=10_000,
        seed=args.seed,
        device="cpu",
    )
    trainer = AdapterTrainer(config, world.vocab, world.feature_config, entries)
    trainer.train(world.build_model(), adapter_name=args.user)
    return {"utterances": len(entries), "cache": trainer.cache_info}


def inference(world: World, args, root: Path) -> dict:
    model = world.build_model()
    base = save_checkpoint(
        root / "base.pt",
        model,
        model_config=world.base_record(),
        vocab=world.vocab,
        feature_config=world.feature_config,
    )
    model.add_adapter("head", hidden_dims=[512, 256])
    AdapterManager.save_adapter(
        model,
        root / "adapters",
        args.user,
        vocab_fingerprint=world.vocab.fingerprint(),
        feature_config=world.feature_config.to_dict(),
    )
    files = sorted((world.corpus_dir / "users" / args.user / "wavs").glob(f"{args.user}-test-*"))[
        : 8 if args.quick else 40
    ]
    recognizer = Recognizer.from_checkpoint(base, adapter_dir=root / "adapters")
    recognizer.transcribe(files, user=args.user)
    return {"files": len(files)}


def run_phase(args) -> None:
    world = World(args)
    with tempfile.TemporaryDirectory(prefix="kospeech_bench_") as tmp:
        root = Path(tmp)
        world.build_model()
        details = {}
        if args.phase == "train_cached":
            details = train(world, args, root, True)
        elif args.phase == "train_uncached":
            details = train(world, args, root, False)
        elif args.phase == "inference":
            details = inference(world, args, root)
    print(json.dumps({"phase": args.phase, "peak_rss_mb": round(peak_rss_mb(), 1), **details}))


def main() -> None:
    parser = base_parser(__doc__.split("\n\n")[0], "runs/benchmarks/memory.json")
    parser.add_argument("--user", default="user01")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        run_phase(args)
        return
    forwarded = [
        "--threads",
        str(args.threads),
        "--corpus-dir",
        args.corpus_dir,
        "--seed",
        str(args.seed),
        "--user",
        args.user,
        "--model",
        args.model,
    ]
    forwarded += (["--quick"] if args.quick else []) + (["--base", args.base] if args.base else [])
    world_info = World(args).describe()  # first: a fresh machine's corpus is built here, not in the imports phase
    phases = {}
    for phase in PHASES:
        completed = subprocess.run(
            [sys.executable, __file__, "--phase", phase, *forwarded], capture_output=True, text=True
        )
        if completed.returncode != 0:
            raise SystemExit(f"the {phase} phase failed (exit {completed.returncode}):\n{completed.stderr}")
        phases[phase] = json.loads(completed.stdout.strip().splitlines()[-1])
    peak = max(item["peak_rss_mb"] for item in phases.values())
    floor = phases["imports"]["peak_rss_mb"]
    # what the trunk cache costs in memory: training's peak above the import floor, cached vs recomputing
    cache_ratio = (phases["train_cached"]["peak_rss_mb"] - floor) / max(
        phases["train_uncached"]["peak_rss_mb"] - floor, 1e-6
    )
    results = {
        "mode": "quick" if args.quick else "full",
        **machine(),
        **world_info,
        "user": args.user,
        "phases": phases,
        "peak_rss_mb": peak,
        "cached_over_uncached_training_memory": round(cache_ratio, 3),
    }
    output = write_results(args.output, results, args)
    print(f"peak memory ({results['mode']}, CPU, {results['torch_threads']} thread(s)); {world_info['model']}")
    print()
    print_table(
        ["phase", "peak RSS MB", "above imports MB"],
        [[name, f"{item['peak_rss_mb']:.1f}", f"{item['peak_rss_mb'] - floor:.1f}"] for name, item in phases.items()],
    )
    print()
    print(f"results: {output}")
    print(f"peak_rss_mb: {peak:.1f} (the largest of the table)")
    print(f"ratio: {cache_ratio:.2f}")


if __name__ == "__main__":
    main()
