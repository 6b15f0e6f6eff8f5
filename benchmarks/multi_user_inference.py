"""Multi-user inference benchmark: one mixed-user batch vs swapping each user's adapter in turn.

    python benchmarks/multi_user_inference.py           # full run (a few minutes on one CPU thread)
    python benchmarks/multi_user_inference.py --quick   # about a minute on 2 cores
    python benchmarks/multi_user_inference.py --quick --adapter-type head

Measures, on CPU with an explicit thread count:

- throughput of a batch of 16 utterances from 16 different users, (a) as one mixed-user batch through
  ``Recognizer.transcribe`` (trunk once, adapters grouped per user, warm cache) and (b) the per-user swap baseline:
  for each utterance, load that user's adapter file into the model (``AdapterManager.load_adapter``) and run the
  utterance alone. Both include feature extraction and greedy decoding. (c) the swap with adapters already in
  memory (attach, run one utterance) separates the batching gain from the loading cost;
- cold adapter load latency (cache miss: find, read, check against the base, build) and warm cache hit latency;
- real-time factor (processing seconds per second of audio).

The four ways are timed in interleaved rounds (each round runs each way once; a way's figure is its fastest round),
so a machine whose load changes during the run slows all of them alike. Mixed-batch adapters of one size are
computed together (``AdapterType.grouped``, e.g. the ``encoder`` bottlenecks as batched matmuls); the
``mixed_vs_base`` figure is mixed-batch throughput / throughput of the same batch through the base model alone.

The model is a realistic small DeepSpeech2 (3 x 256 bidirectional GRU, 2,000 classes, 80 fbank bins) with RANDOM
weights and the audio is SYNTHETIC (seeded tones and noise): the figures are about speed, not accuracy. Results go
to ``runs/benchmarks/multi_user_inference.json``; the last printed line is ``ratio: X.XX`` = mixed-batch
throughput / per-user-swap throughput. The default adapter type is ``encoder`` (the recommended one); ``--adapter-type``
takes the others.
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _bench_utils import write_results  # noqa: E402

from kospeech.checkpoint import save_checkpoint  # noqa: E402
from kospeech.cli.common import positive_int  # noqa: E402
from kospeech.data.features import FeatureConfig, FeatureExtractor  # noqa: E402
from kospeech.decode import GreedyCTCDecoder  # noqa: E402
from kospeech.inference import Recognizer  # noqa: E402
from kospeech.model_builder import build_deepspeech2  # noqa: E402
from kospeech.models import AdapterManager, count_parameters  # noqa: E402
from kospeech.vocabs import Vocabulary  # noqa: E402

SAMPLE_RATE = 16000
NUM_USERS = 16
NUM_CLASSES = 2000
MODEL_CONFIG = {"rnn_type": "gru", "num_rnn_layers": 3, "rnn_hidden_dim": 256, "bidirectional": True}
ADAPTER_SIZES = {"head": {"hidden_dims": [512, 256]}, "residual_head": {"hidden_dims": [512, 256]}}
ADAPTER_SIZES["encoder"] = {"bottleneck_dim": 64}


def synthetic_utterance(seconds: float, seed: int) -> np.ndarray:
    """Seeded speech-like signal: gliding harmonics with syllable-rate gating plus noise, float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = rng.uniform(100, 220) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t))
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    gate = (np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, np.pi)) > -0.2).astype(float)
    signal = 0.1 * voiced * gate + 0.005 * rng.standard_normal(t.shape)
    return signal.astype(np.float32)


def build_world(root: Path, adapter_type: str, seed: int) -> Dict[str, Any]:
    """Random base checkpoint + one adapter per user with random (non-zero) weights."""
    torch.manual_seed(seed)
    features = FeatureConfig()
    vocab = Vocabulary(["<pad>", "<sos>", "<eos>", "<blank>", " "] + [chr(0xAC00 + i) for i in range(NUM_CLASSES - 5)])
    model = build_deepspeech2(features.feature_dim, len(vocab), MODEL_CONFIG).eval()
    checkpoint = save_checkpoint(
        root / "base.pt",
        model,
        model_config={"input_dim": features.feature_dim, "num_classes": len(vocab), **MODEL_CONFIG},
        vocab=vocab,
        feature_config=features,
    )
    users = [f"user{index:02d}" for index in range(NUM_USERS)]
    adapter_params = 0
    for user in users:
        adapter = model.add_adapter(adapter_type, **ADAPTER_SIZES[adapter_type])
        with torch.no_grad():
            for parameter in adapter.parameters():
                parameter.normal_(0.0, 0.02)
        adapter_params = count_parameters(adapter)["total"]
        AdapterManager.save_adapter(
            model, root / "adapters", user, vocab_fingerprint=vocab.fingerprint(), feature_config=features.to_dict()
        )
        model.remove_adapter()
    return {
        "checkpoint": checkpoint,
        "adapter_dir": root / "adapters",
        "users": users,
        "base_params": count_parameters(model)["total"],
        "adapter_params": adapter_params,
    }


def best_of_rounds(repeats: int, runs: Dict[str, Callable[[], Any]]) -> Dict[str, float]:
    """Fastest wall time of each run over ``repeats`` interleaved rounds (after the caller's warm-up)."""
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def per_user_swap(world: Dict[str, Any], waveforms: List[np.ndarray], from_disk: bool) -> Callable[[], List[str]]:
    """The baseline: for each utterance, put its user's adapter into the model, then run that utterance alone."""
    recognizer = Recognizer.from_checkpoint(world["checkpoint"], adapter_dir=world["adapter_dir"])
    model, vocab = recognizer.model, recognizer.vocab
    extractor = FeatureExtractor(recognizer.feature_config)
    decoder = GreedyCTCDecoder(vocab)
    in_memory = {user: recognizer.cache.get(user) for user in world["users"]}

    def run() -> List[str]:
        texts = []
        for user, waveform in zip(world["users"], waveforms):
            with torch.no_grad():
                if from_disk:
                    AdapterManager.load_adapter(
                        model,
                        AdapterManager.find_adapter(world["adapter_dir"], user),
                        vocab_fingerprint=vocab.fingerprint(),
                        feature_config=recognizer.feature_config.to_dict(),
                    )
                else:
                    model.attach_adapter(in_memory[user], replace=True)
            with torch.inference_mode():
                features = extractor(waveform)
                _, lengths, log_probs = model(features[None], torch.tensor([features.shape[0]]))
                texts.append(decoder(log_probs, lengths)[0].text)
        model.remove_adapter()
        return texts

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter utterances and fewer repeats (< 1 minute)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch intra-op threads (set explicitly)")
    parser.add_argument("--adapter-type", choices=sorted(ADAPTER_SIZES), default="encoder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="runs/benchmarks/multi_user_inference.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seconds = (1.5, 2.5) if args.quick else (3.0, 6.0)
    repeats = 3 if args.quick else 5
    rng = np.random.default_rng(args.seed)
    durations = rng.uniform(*seconds, size=NUM_USERS)
    waveforms = [synthetic_utterance(float(length), args.seed + index) for index, length in enumerate(durations)]
    audio_seconds = float(sum(waveform.size for waveform in waveforms) / SAMPLE_RATE)

    with tempfile.TemporaryDirectory(prefix="kospeech_bench_") as tmp:
        world = build_world(Path(tmp), args.adapter_type, args.seed)
        users = world["users"]
        recognizer = Recognizer.from_checkpoint(
            world["checkpoint"], adapter_dir=world["adapter_dir"], cache_size=NUM_USERS, batch_size=NUM_USERS
        )

        # adapter cache latencies: cold = miss (file read + checks + build), warm = hit
        cold = []
        for user in users:
            start = time.perf_counter()
            recognizer.cache.get(user)
            cold.append(time.perf_counter() - start)
        warm = []
        for _ in range(20):
            for user in users:
                start = time.perf_counter()
                recognizer.cache.get(user)
                warm.append(time.perf_counter() - start)

        mixed_run = lambda: recognizer.transcribe(waveforms, user=users, sample_rate=SAMPLE_RATE)  # noqa: E731
        base_run = lambda: recognizer.transcribe(waveforms, sample_rate=SAMPLE_RATE)  # noqa: E731
        swap_disk = per_user_swap(world, waveforms, from_disk=True)
        swap_memory = per_user_swap(world, waveforms, from_disk=False)
        mixed_texts = [result.text for result in mixed_run()]  # warm-up, and a correctness cross-check
        swap_texts = swap_disk()
        swap_memory()
        base_run()
        timings = best_of_rounds(
            repeats,
            {
                "mixed_batch": mixed_run,
                "per_user_swap": swap_disk,
                "per_user_swap_in_memory": swap_memory,
                "base_only_batch": base_run,
            },
        )
        stats = recognizer.cache_stats()

    rows = {
        name: {
            "seconds": round(value, 4),
            "utterances_per_second": round(NUM_USERS / value, 3),
            "real_time_factor": round(value / audio_seconds, 5),
        }
        for name, value in timings.items()
    }
    ratio = timings["per_user_swap"] / timings["mixed_batch"]
    results = {
        "note": "random weights and synthetic audio: speed figures only, not accuracy",
        "mode": "quick" if args.quick else "full",
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "model": {**MODEL_CONFIG, "num_classes": NUM_CLASSES, "feature": "fbank 80", "params": world["base_params"]},
        "adapter": {"type": args.adapter_type, **ADAPTER_SIZES[args.adapter_type], "params": world["adapter_params"]},
        "num_users": NUM_USERS,
        "utterance_seconds": [round(float(length), 3) for length in durations],
        "audio_seconds": round(audio_seconds, 3),
        "repeats": repeats,
        "throughput": rows,
        "cold_adapter_load_ms": {
            "median": round(1000 * statistics.median(cold), 3),
            "max": round(1000 * max(cold), 3),
        },
        "warm_cache_hit_ms": {
            "median": round(1000 * statistics.median(warm), 4),
            "max": round(1000 * max(warm), 4),
        },
        "cache_stats": vars(stats),
        "same_texts_mixed_vs_swap": mixed_texts == swap_texts,
        "ratio_mixed_vs_per_user_swap": round(ratio, 3),
        "ratio_mixed_vs_swap_in_memory": round(timings["per_user_swap_in_memory"] / timings["mixed_batch"], 3),
        "mixed_vs_base": round(timings["base_only_batch"] / timings["mixed_batch"], 3),
        "load_average": [round(value, 2) for value in os.getloadavg()],
    }
    output = write_results(args.output, results, args)

    print(f"multi-user inference benchmark ({results['mode']}, CPU, {results['torch_threads']} thread(s))")
    print(
        f"model: {MODEL_CONFIG['num_rnn_layers']}x{MODEL_CONFIG['rnn_hidden_dim']} biGRU, {NUM_CLASSES} classes, "
        f"{world['base_params'] / 1e6:.2f} M params; {args.adapter_type} adapters, "
        f"{world['adapter_params'] / 1e6:.3f} M params each"
    )
    print("RANDOM weights and SYNTHETIC audio: figures are about speed, not accuracy")
    print(f"{NUM_USERS} utterances from {NUM_USERS} users, {audio_seconds:.1f} s of audio, best of {repeats}")
    print()
    print(f"{'method':<28}{'seconds':>10}{'utt/s':>10}{'RTF':>10}")
    for name, row in rows.items():
        print(f"{name:<28}{row['seconds']:>10.3f}{row['utterances_per_second']:>10.2f}{row['real_time_factor']:>10.4f}")
    print()
    print(f"cold adapter load: median {results['cold_adapter_load_ms']['median']:.2f} ms")
    print(f"warm cache hit:    median {results['warm_cache_hit_ms']['median']:.3f} ms")
    print(f"mixed batch vs swap with in-memory adapters: {results['ratio_mixed_vs_swap_in_memory']:.2f}x")
    print(f"mixed_vs_base: {results['mixed_vs_base']:.2f} (mixed-batch throughput / base alone)")
    print(f"load average at the end: {results['load_average']}")
    print(f"same transcripts (mixed vs swap): {results['same_texts_mixed_vs_swap']}")
    print(f"results: {output}")
    print(f"ratio: {ratio:.2f}")


if __name__ == "__main__":
    main()
