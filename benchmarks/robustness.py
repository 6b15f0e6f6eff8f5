"""Real-recording robustness: clips padded with silence, clips joined with pauses, and an hour-long file.

    python benchmarks/robustness.py            # 20 test clips per user, joined files up to 5 min, a 60 min file
    python benchmarks/robustness.py --quick    # 8 clips per user, 30 s joined files, a 5 min long file

The users' adapters are ``make demo``'s (``runs/demo/adapters``); where that folder holds none, they are trained
first, as ``make demo`` trains them.

For every built-in user, with the user's adapter and with the base alone, through ``Recognizer.transcribe`` as a
service would call it (voice activity detection on, the shipped base's own features):

- ``clean``: each test clip alone;
- ``zeros``: each clip with 0.5 to 2 s of digital silence before and after (lengths drawn per clip);
- ``noise``: the same with low noise instead: low-pass filtered Gaussian noise of a random colour, 30 to 50 dB below
  the clip's speech level (the 98th percentile of its 10 ms frame levels), as a quiet room is under a voice;
- ``joined``: the clips joined with pauses of 0.5 to 1.5 s of such noise into files of 30 s to 5 min (``--quick``:
  30 s), scored as one transcript against the joined references.

Then 10 minutes and an hour (``--quick``: 50 s and 5 min) of joined clips, each written to a WAV file piece by
piece, are transcribed from disk: the process's peak resident set size while transcribing the hour (measured from
a reset of the kernel's high-water mark, :class:`~kospeech.trainer.peak_memory.PeakMemory`) is that of the 10
minutes (plus noise) when memory stays bounded while a file streams.

CER counts character edits over reference characters (spaces removed, as KoSpeech counts), summed over a condition's utterances.
Results go to ``runs/benchmarks/robustness.json``; printed lines give each condition's CER and its ratio to the
clean CER, and the last line is ``ratio: X.XX`` = the worst of the padded conditions' CER / clean CER, adapted
users (target <= 1.05).
"""

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _bench_utils import ensure_demo_adapters, users_parser, write_results  # noqa: E402

from kospeech.data.audio import load_audio  # noqa: E402
from kospeech.data.manifest import read_manifest  # noqa: E402
from kospeech.data.silence_padding import low_noise  # noqa: E402
from kospeech.data.voice_activity import frame_levels  # noqa: E402
from kospeech.inference import Recognizer  # noqa: E402
from kospeech.metrics import character_error_rate  # noqa: E402
from kospeech.trainer.peak_memory import PeakMemory  # noqa: E402

SAMPLE_RATE = 16000


def parse_args() -> argparse.Namespace:
    parser = users_parser(
        __doc__.split("\n\n")[0], "runs/benchmarks/robustness.json", "fewer clips, a 5 minute long file"
    )
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def speech_level(waveform: np.ndarray) -> float:
    """A clip's speech level: the 98th percentile of its 10 ms frame levels, dBFS."""
    return float(np.percentile(frame_levels([waveform], SAMPLE_RATE), 98))


class Quiet:
    """Seeded quiet stretches: digital zeros, or low noise of a random colour, 30 to 50 dB below a speech level."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def stretch(self, seconds: float, kind: str, speech_dbfs: float) -> np.ndarray:
        count = int(seconds * SAMPLE_RATE)
        if kind == "zeros":
            return np.zeros(count, dtype=np.float32)
        level = speech_dbfs - float(self.rng.uniform(30.0, 50.0))
        return low_noise(count, level, float(self.rng.uniform(0.0, 0.95)), self.rng)


def cer(pairs: List[Tuple[str, str]]) -> float:
    """Corpus CER of ``(reference, hypothesis)`` pairs."""
    return character_error_rate([reference for reference, _ in pairs], [hypothesis for _, hypothesis in pairs])


def joined_pieces(clips: List[np.ndarray], texts: List[str], quiet: Quiet, seconds: float):
    """Pieces of one recording: clips in a cycle, each followed by a 0.5-1.5 s pause of noise, until ``seconds``.

    Yields:
        ``(samples, reference or None)`` pieces; pauses have no reference.
    """
    total, position = 0, 0
    level = float(np.median([speech_level(clip) for clip in clips]))
    pause = quiet.stretch(0.5, "noise", level)
    while True:
        yield pause, None
        total += pause.size
        if total >= seconds * SAMPLE_RATE:
            return
        yield clips[position % len(clips)], texts[position % len(texts)]
        total += clips[position % len(clips)].size
        position += 1
        pause = quiet.stretch(float(quiet.rng.uniform(0.5, 1.5)), "noise", level)


def joined_file(clips: List[np.ndarray], texts: List[str], quiet: Quiet, seconds: float) -> Tuple[np.ndarray, str]:
    """One recording of about ``seconds`` in memory, and its reference."""
    pieces = list(joined_pieces(clips, texts, quiet, seconds))
    return np.concatenate([samples for samples, _ in pieces]), " ".join(text for _, text in pieces if text)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    clips_per_user = 8 if args.quick else 20
    joined_targets = [30.0] if args.quick else [30.0, 120.0, 300.0]
    long_minutes = 5.0 if args.quick else 60.0
    ensure_demo_adapters(args)
    recognizer = Recognizer.from_checkpoint(args.base, adapter_dir=args.adapter_dir)
    users = recognizer.available_users()
    quiet = Quiet(args.seed)
    conditions: Dict[str, Dict[str, List[Tuple[str, str]]]] = {}
    started = time.perf_counter()
    all_clips: List[np.ndarray] = []
    all_texts: List[str] = []
    for user in users:
        entries = read_manifest(Path(args.users_dir) / "users" / user / "test.tsv")[:clips_per_user]
        clips = [load_audio(entry.audio_path, SAMPLE_RATE) for entry in entries]
        texts = [entry.transcript for entry in entries]
        all_clips += clips
        all_texts += texts
        inputs: Dict[str, List[np.ndarray]] = {"clean": clips}
        levels = [speech_level(clip) for clip in clips]
        for kind in ("zeros", "noise"):
            inputs[kind] = [
                np.concatenate(
                    [
                        quiet.stretch(float(quiet.rng.uniform(0.5, 2.0)), kind, level),
                        clip,
                        quiet.stretch(float(quiet.rng.uniform(0.5, 2.0)), kind, level),
                    ]
                )
                for clip, level in zip(clips, levels)
            ]
        joined = [joined_file(clips, texts, quiet, seconds) for seconds in joined_targets]
        for who, name in (("adapter", user), ("base", None)):
            for condition, waves in inputs.items():
                results = recognizer.transcribe(waves, user=name, sample_rate=SAMPLE_RATE)
                conditions.setdefault(f"{who}/{condition}", {}).setdefault(user, []).extend(
                    zip(texts, [result.text for result in results])
                )
            for waveform, reference in joined:
                result = recognizer.transcribe(waveform, user=name, sample_rate=SAMPLE_RATE)
                conditions.setdefault(f"{who}/joined", {}).setdefault(user, []).append((reference, result.text))
    figures: Dict[str, Any] = {}
    for key, per_user in sorted(conditions.items()):
        pairs = [pair for user_pairs in per_user.values() for pair in user_pairs]
        figures[key] = {"cer": round(cer(pairs), 4), "per_user": {u: round(cer(p), 4) for u, p in per_user.items()}}
    for who in ("adapter", "base"):
        clean = figures[f"{who}/clean"]["cer"]
        for condition in ("zeros", "noise", "joined"):
            figures[f"{who}/{condition}"]["ratio_to_clean"] = round(figures[f"{who}/{condition}"]["cer"] / clean, 3)

    long_files = []
    for minutes in (long_minutes / 6.0, long_minutes):  # the peak after the long file must not exceed the short's much
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "long.wav"
            with sf.SoundFile(str(path), "w", SAMPLE_RATE, 1, subtype="PCM_16") as handle:  # written piece by piece
                for samples, _ in joined_pieces(all_clips, all_texts, quiet, minutes * 60.0):
                    handle.write(samples)
            seconds = sf.info(str(path)).duration
            tick = time.perf_counter()
            with PeakMemory() as peak:  # the peak of this transcription alone, not the process' high-water mark
                long_result = recognizer.transcribe(path, user=users[0])
            long_seconds = time.perf_counter() - tick
            memory = peak.figures()
            long_files.append(
                {
                    "audio_minutes": round(seconds / 60.0, 1),
                    "segments": long_result.num_segments,
                    "processing_seconds": round(long_seconds, 1),
                    "real_time_factor": round(long_seconds / seconds, 4),
                    "peak_rss_mb": memory["peak_rss_mb"],
                    "peak_rss_since_start": memory["peak_rss_since_start"],
                }
            )
    figures["long_files"] = long_files
    worst = max(figures["adapter/zeros"]["ratio_to_clean"], figures["adapter/noise"]["ratio_to_clean"])
    report = {
        "benchmark": "robustness",
        "quick": args.quick,
        "base": args.base,
        "users": users,
        "clips_per_user": clips_per_user,
        "threads": args.threads,
        "platform": platform.platform(),
        "conditions": figures,
        "seconds": round(time.perf_counter() - started, 1),
        "ratio": round(worst, 3),
    }
    write_results(args.output, report, args)
    for key, values in figures.items():
        if key != "long_files":
            print(
                f"{key:18s} CER {values['cer']:.4f}  x{values.get('ratio_to_clean', 1.0):.3f} of clean  "
                + " ".join(f"{u}={c:.3f}" for u, c in values["per_user"].items())
            )
    for long_file in long_files:
        print(
            f"long file: {long_file['audio_minutes']} min in {long_file['segments']} segments, "
            f"RTF {long_file['real_time_factor']}, peak RSS while transcribing {long_file['peak_rss_mb']} MB"
        )
    print(f"results: {args.output}")
    print(f"ratio: {worst:.3f}")


if __name__ == "__main__":
    main()
