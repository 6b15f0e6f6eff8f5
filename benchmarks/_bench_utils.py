"""Shared setup of the training benchmarks: the demo corpus, a base model, timing and result files.

Not a benchmark itself. The base model is either a checkpoint (``--base``) or, by default, a DeepSpeech2 of the
``ds2_small`` sizes (3 x 256 bidirectional GRU; ``--model full``: the spec's 5 x 512) with RANDOM weights on 80-bin
fbank features: the figures are about speed, never accuracy.
"""

import argparse
import dataclasses
import json
import logging
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

# tqdm reads TQDM_* variables when it is first imported (torch imports it): bars stay off unless --verbose
if "--verbose" not in sys.argv:
    os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kospeech.checkpoint import load_checkpoint  # noqa: E402
from kospeech.cli.common import positive_int  # noqa: E402
from kospeech.data.features import FeatureConfig  # noqa: E402
from kospeech.data.manifest import ManifestEntry, read_manifest  # noqa: E402
from kospeech.data.synthetic import build_user_sets, ensure_corpus  # noqa: E402
from kospeech.demo import DemoConfig, run_demo  # noqa: E402
from kospeech.device import resolve_device  # noqa: E402
from kospeech.fileio import atomic_write, atomic_write_json  # noqa: E402
from kospeech.model_builder import DeepSpeech2Config, build_deepspeech2  # noqa: E402
from kospeech.models import AdapterManager, DeepSpeech2, count_parameters  # noqa: E402
from kospeech.resources import SHIPPED_BASE_MODEL  # noqa: E402
from kospeech.vocabs import Vocabulary  # noqa: E402

MODELS = {
    "small": (DeepSpeech2Config(num_rnn_layers=3, rnn_hidden_dim=256), "ds2_small (3 x 256 biGRU)"),
    "full": (DeepSpeech2Config(num_rnn_layers=5, rnn_hidden_dim=512), "spec-size DeepSpeech2 (5 x 512 biGRU)"),
}


def base_parser(description: str, output: str, device_option: bool = False) -> argparse.ArgumentParser:
    """Options every training benchmark takes (``--device`` only where the benchmark supports GPUs)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a smaller run of about a minute on 2 cores")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch intra-op threads (set explicitly)")
    parser.add_argument("--corpus-dir", default="data/corpus_demo", help="built-in demo corpus (built if missing)")
    parser.add_argument("--base", default=None, help="base checkpoint; default: a random-weight model on fbank 80")
    parser.add_argument(
        "--model",
        choices=sorted(MODELS),
        default="small",
        help="size of the random-weight model: small = ds2_small 3 x 256, full = 5 x 512",
    )
    parser.add_argument("--seed", type=int, default=0)
    if device_option:
        parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (the figures in docs are CPU)")
    parser.add_argument("--output", default=output, help="results JSON")
    parser.add_argument("--verbose", action="store_true", help="show the library's logs")
    return parser


def users_parser(description: str, output: str, quick_help: str) -> argparse.ArgumentParser:
    """Options of the benchmarks that transcribe the built-in users with their ``make demo`` adapters."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--base", default=SHIPPED_BASE_MODEL, help="base checkpoint")
    parser.add_argument("--adapter-dir", default="runs/demo/adapters", help="the users' adapters (make demo)")
    parser.add_argument("--users-dir", default="data/demo_users", help="the users' data (make demo)")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch intra-op threads")
    parser.add_argument("--output", default=output, help="results JSON")
    return parser


def check_base(path: str) -> None:
    """Stop at once, in one line, when ``--base`` names no file: a benchmark otherwise builds a corpus or trains for
    minutes before reading it, and then fails with a traceback."""
    if not Path(path).is_file():
        raise SystemExit(f"error: --base {path} not found")


def ensure_demo_adapters(args: argparse.Namespace) -> None:
    """Train the built-in users' adapters as ``make demo`` does when ``--adapter-dir`` holds none (once; about two
    minutes on 2 cores when the users' speech is already synthesized).

    ``make demo`` writes its adapters to ``<output dir>/adapters``: a folder of any other name is never filled here, so
    a mistyped ``--adapter-dir`` stops the benchmark instead of training into it. Likewise a ``--base`` that does not
    exist stops it, unless it is the shipped base's path: ``make demo`` trains a base when that one is missing.
    """
    if args.base != SHIPPED_BASE_MODEL:
        check_base(args.base)
    adapter_dir = Path(args.adapter_dir)
    if adapter_dir.is_dir() and AdapterManager.adapter_names(adapter_dir):
        return
    if adapter_dir.name != "adapters":
        raise SystemExit(f"no adapters in {adapter_dir}: run `make demo` first, or pass its --output-dir's adapters/")
    print(f"no adapters in {adapter_dir}: training the built-in users' adapters as `make demo` does (once)", flush=True)
    config = DemoConfig(users_dir=args.users_dir, base_model_path=args.base, output_dir=str(adapter_dir.parent))
    config.adapter.num_threads = args.threads
    run_demo(config)


class World:
    """Corpus, vocabulary, features and a way to build fresh copies of the base model."""

    def __init__(self, args: argparse.Namespace) -> None:
        if args.base:  # before the corpus is built: a mistyped path is otherwise found minutes later
            check_base(args.base)
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, force=True)
        torch.set_num_threads(args.threads)
        self.device = resolve_device(getattr(args, "device", "cpu"))
        self.corpus_dir = Path(args.corpus_dir).resolve()  # manifests written elsewhere keep valid audio paths
        self.card = ensure_corpus(self.corpus_dir, preset="demo", seed=0)
        self.checkpoint = load_checkpoint(args.base) if args.base else None
        if self.checkpoint is not None:
            self.vocab: Vocabulary = self.checkpoint.vocab
            self.feature_config: FeatureConfig = self.checkpoint.feature_config
            self.model_description = f"checkpoint {args.base}"
        else:
            self.vocab = Vocabulary.from_csv(self.corpus_dir / "vocab.csv")
            self.feature_config = FeatureConfig()
            self.model_config, name = MODELS[args.model]
            self.model_description = f"random-weight {name}, fbank 80"
        # a checkpoint may use other output units (e.g. jamo) than the corpus' syllable manifests were written with
        self.relabel = self.checkpoint is not None
        self.seed = args.seed
        self.model_params = count_parameters(self.build_model())["total"]

    def build_model(self) -> DeepSpeech2:
        """A fresh base model on the CPU (the same weights every call)."""
        if self.checkpoint is not None:
            return self.checkpoint.build_model()
        torch.manual_seed(self.seed)
        return build_deepspeech2(self.feature_config.feature_dim, len(self.vocab), self.model_config)

    def base_record(self) -> Dict[str, Any]:
        """The ``model_config`` a checkpoint of :meth:`build_model`'s model needs to be built again as it is."""
        if self.checkpoint is not None:
            return dict(self.checkpoint.model_config)
        architecture = dataclasses.asdict(self.model_config)
        return {"input_dim": self.feature_config.feature_dim, "num_classes": len(self.vocab), **architecture}

    def warm_up_device(self) -> None:
        """On a GPU, one untimed forward/backward so that no timed run pays for CUDA's start-up (no-op on the CPU)."""
        if self.device.type != "cuda":
            return
        model = self.build_model().to(self.device).train()
        features = torch.randn(4, 300, self.feature_config.feature_dim, device=self.device)
        log_probs, _ = model(features, torch.tensor([300, 250, 200, 150]))[:2]
        log_probs.sum().backward()
        torch.cuda.synchronize(self.device)

    def users(self) -> List[str]:
        return sorted(path.name for path in (self.corpus_dir / "users").iterdir() if path.is_dir())

    def enrollment(self, user: str) -> List[ManifestEntry]:
        return read_manifest(self.corpus_dir / "users" / user / "enroll.tsv", self.vocab, relabel=self.relabel)

    def base_entries(self) -> List[ManifestEntry]:
        return read_manifest(self.corpus_dir / "base" / "train.tsv", self.vocab, relabel=self.relabel)

    def describe(self) -> Dict[str, Any]:
        return {
            "model": self.model_description,
            "model_params": self.model_params,
            "feature_dim": self.feature_config.feature_dim,
            "num_classes": len(self.vocab),
        }


def timed(run: Callable[[], Any]) -> Tuple[float, Any]:
    """Wall seconds of one call and its result."""
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def machine(device: Optional[torch.device] = None) -> Dict[str, Any]:
    """Where the figures were measured: the device (default the CPU; a GPU's name), threads, versions, load."""
    device = torch.device("cpu") if device is None else device
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


VOICES = ["user01", "user02", "user03", "user04"]
"""The built-in voices the service benchmarks enroll (users of the demo corpus, the shipped base's corpus)."""
VOICE_ENROLLMENT = 40
"""Enrollment utterances of each of the :data:`VOICES` (:func:`voice_sets`)."""


def voice_sets(users_dir: str, vocab: Vocabulary) -> Dict[str, Dict[str, Path]]:
    """The :data:`VOICES`' manifests (:data:`VOICE_ENROLLMENT` enrollment and 16 test utterances each), synthesized
    into ``users_dir`` on first use: ``{voice: {"enroll": path, "test": path}}``."""
    return build_user_sets(users_dir, vocab, preset="demo", users=VOICES, max_enroll=VOICE_ENROLLMENT, max_test=16)


def device_label(results: Dict[str, Any]) -> str:
    """``CPU`` or the GPU's name, for the first line a benchmark prints."""
    return "CPU" if results["device"] == "cpu" else f"{results['device']} {results['device_name']}"


def write_results(path: Union[str, os.PathLike], results: Dict[str, Any], args: argparse.Namespace) -> Path:
    """Write ``results`` as JSON to ``path`` (atomically), with the run's parsed arguments under ``"config"``: the
    file then says how its figures were made (seed, sizes, ``--quick``, ...)."""
    # through JSON and back: what JSON has no type for (a Path) is recorded as its text
    config = json.loads(json.dumps(vars(args), default=str))
    return atomic_write_json(path, {**results, "config": config})


def save_figure(figure: Any, path: Union[str, os.PathLike], dpi: int) -> Path:
    """Save a matplotlib figure to ``path`` atomically, in the format its suffix names (PNG without one)."""
    path = Path(path)
    # a file handle carries no name to take the format from, as savefig does from a path
    return atomic_write(path, lambda handle: figure.savefig(handle, format=path.suffix[1:] or "png", dpi=dpi))


def print_table(header: List[str], rows: List[List[Any]], widths: Optional[List[int]] = None) -> None:
    widths = widths or [max(len(str(cell)) for cell in column) + 2 for column in zip(header, *rows)]
    print(
        "".join(
            str(cell).ljust(width) if index == 0 else str(cell).rjust(width)
            for index, (cell, width) in enumerate(zip(header, widths))
        )
    )
    for row in rows:
        print(
            "".join(
                str(cell).ljust(width) if index == 0 else str(cell).rjust(width)
                for index, (cell, width) in enumerate(zip(row, widths))
            )
        )
