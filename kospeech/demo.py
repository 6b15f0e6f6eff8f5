"""The main job end to end on the built-in data: per-user adapters on a shared frozen base.

For each built-in user: train an adapter on the user's enrollment set, save it, then transcribe the
user's test set with the base model alone and with the adapter. Results go to
``{output_dir}/results.json`` and ``{output_dir}/personalization.png``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from omegaconf import OmegaConf

from kospeech.checkpoint import load_checkpoint
from kospeech.config import TrainJobConfig
from kospeech.data.dataset import build_dataloader
from kospeech.data.features import FeatureExtractor
from kospeech.data.manifest import read_manifest
from kospeech.data.synthetic import build_user_sets
from kospeech.evaluation import evaluate_base_and_adapter
from kospeech.fileio import atomic_write, atomic_write_json, atomic_write_text
from kospeech.model_builder import DeepSpeech2Config
from kospeech.models import AdapterManager
from kospeech.resources import SHIPPED_BASE_MODEL, local_or_shipped
from kospeech.trainer.adapter_trainer import AdapterTrainer
from kospeech.trainer.configs import AdapterTrainConfig, DataConfig, TrainConfig
from kospeech.trainer.recipes import train_base_model

__all__ = ["DemoConfig", "run_demo", "train_demo_base", "format_table", "plot_results"]

logger = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    """Settings of :func:`run_demo`."""

    corpus_dir: str = field(
        default="data/corpus_demo", metadata={"help": "full built-in corpus; only needed to train a missing base"}
    )
    users_dir: str = field(default="data/demo_users", metadata={"help": "the users' synthesized speech (cached)"})
    corpus_preset: str = field(default="demo", metadata={"help": "tiny, demo or bench"})
    corpus_seed: int = field(default=0, metadata={"help": "corpus seed"})
    base_model_path: str = field(
        default=SHIPPED_BASE_MODEL, metadata={"help": "shipped base; trained first when missing"}
    )
    synthesis_workers: int = field(default=2, metadata={"help": "processes synthesizing the users' speech"})
    base_train_minutes: float = field(default=8.0, metadata={"help": "time budget when a base must be trained"})
    output_dir: str = field(default="runs/demo", metadata={"help": "adapters, results.json, plot"})
    users: Optional[List[str]] = field(default=None, metadata={"help": "users to adapt (default: all)"})
    max_enroll: Optional[int] = field(default=None, metadata={"help": "enrollment utterances per user (default all)"})
    max_test: Optional[int] = field(default=None, metadata={"help": "test utterances per user (default all)"})
    adapter: AdapterTrainConfig = field(
        default_factory=lambda: AdapterTrainConfig.for_adapter_type("encoder", base_model_path="", num_workers=0),
        metadata={"help": "adapter training settings shared by every user (the encoder type's recipe)"},
    )


def train_demo_base(config: DemoConfig) -> Path:
    """Train a small base (``ds2_small`` sizes) on the corpus' base speakers within ``base_train_minutes``.

    Returns:
        The best checkpoint of that run (``{output_dir}/base/best.pt``).
    """
    logger.info("no base model at %s: training one for %.1f minutes", config.base_model_path, config.base_train_minutes)
    job = TrainJobConfig(
        model=DeepSpeech2Config(num_rnn_layers=3, rnn_hidden_dim=256),
        data=DataConfig(
            corpus_dir=config.corpus_dir, corpus_preset=config.corpus_preset, corpus_seed=config.corpus_seed
        ),
        train=TrainConfig(output_dir=str(Path(config.output_dir) / "base"), max_minutes=config.base_train_minutes),
    )
    return Path(train_base_model(job)["checkpoint"])


def run_demo(config: DemoConfig) -> List[Dict[str, Any]]:
    """Adapt every built-in user and measure base vs adapter CER on each user's test set.

    Returns:
        One record per user: ``user``, ``base_cer``, ``adapter_cer``, ``relative_change``,
        ``trainable_params``, ``adapter_bytes``, ``train_seconds``, ``adapter_path``, ``rejected`` (the adapter is no
        better than the base on the held-out part, so a Recognizer serves the base) and the curves.
    """
    output_dir = Path(config.output_dir)
    logger.info("demo config: %s", atomic_write_text(output_dir / "config.yaml", OmegaConf.to_yaml(config)))
    base_path = Path(local_or_shipped(config.base_model_path))  # an installed package's copy of the default
    if not base_path.exists():
        base_path = train_demo_base(config)
    checkpoint = load_checkpoint(base_path)
    vocab, feature_config = checkpoint.vocab, checkpoint.feature_config
    extractor = FeatureExtractor(feature_config).without_dither()  # test features, as inference computes them
    manifests = build_user_sets(
        config.users_dir,
        vocab,
        preset=config.corpus_preset,
        seed=config.corpus_seed,
        users=config.users,
        max_enroll=config.max_enroll,
        max_test=config.max_test,
        num_workers=config.synthesis_workers,
    )
    adapter_dir = output_dir / "adapters"
    records = []
    for user, paths in sorted(manifests.items()):
        enroll = read_manifest(paths["enroll"], vocab)
        test = read_manifest(paths["test"], vocab)
        torch.manual_seed(config.adapter.seed)
        model = checkpoint.build_model()
        adapter_config = AdapterTrainConfig(
            **{
                **config.adapter.__dict__,
                "base_model_path": str(base_path),
                "adapter_name": user,
                "adapter_save_dir": str(adapter_dir),
                "output_dir": str(output_dir / "runs" / user),
            }
        )
        trainer = AdapterTrainer(adapter_config, vocab, feature_config, enroll, model_config=checkpoint.model_config)
        started = time.monotonic()
        trainer.train(model, adapter_name=user)
        train_seconds = time.monotonic() - started
        fresh = checkpoint.build_model()
        AdapterManager.load_adapter(
            fresh, trainer.adapter_path, vocab_fingerprint=vocab.fingerprint(), feature_config=feature_config.to_dict()
        )
        fresh.eval()
        loader = build_dataloader(test, extractor, 16, shuffle=False)
        base, adapted = evaluate_base_and_adapter(fresh, loader, vocab, description=user)
        records.append(
            {
                "user": user,
                "base_cer": base.cer,
                "adapter_cer": adapted.cer,
                "relative_change": (adapted.cer - base.cer) / base.cer if base.cer > 0 else 0.0,
                "trainable_params": trainer.parameter_stats["trainable"],
                "percent_of_base": trainer.parameter_stats["percent_of_base"],
                "adapter_bytes": trainer.adapter_path.stat().st_size,
                "train_seconds": round(train_seconds, 1),
                "adapter_path": str(trainer.adapter_path),
                "rejected": trainer.outcome["rejected"],
                "enroll_utterances": len(enroll),
                "test_utterances": len(test),
                "history": trainer.state.history,
            }
        )
        logger.info("%s: base CER %.4f -> adapter CER %.4f", user, base.cer, adapted.cer)
    atomic_write_json(output_dir / "results.json", records)
    plot_results(records, output_dir / "personalization.png")
    return records


def format_table(records: List[Dict[str, Any]]) -> str:
    """A plain-text table of the per-user results."""
    header = (
        f"{'user':<10} {'base CER':>9} {'adapter CER':>12} {'change':>8} {'trainable':>10} {'file':>9} {'train s':>8}"
    )
    lines = [header, "-" * len(header)]
    for record in records:
        lines.append(
            f"{record['user']:<10} {record['base_cer']:>9.3f} {record['adapter_cer']:>12.3f} "
            f"{record['relative_change'] * 100:>7.1f}% {record['trainable_params']:>10,d} "
            f"{record['adapter_bytes'] / 1e6:>7.2f}MB {record['train_seconds']:>8.1f}"
            + (
                "  rejected: no better than the base on the held-out part; the base is served"
                if record["rejected"]
                else ""
            )
        )
    return "\n".join(lines)


def plot_results(records: List[Dict[str, Any]], path: Path) -> Path:
    """Training curves (held-out CER per epoch) per user and base-vs-adapter bars, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (curves, bars) = plt.subplots(1, 2, figsize=(11, 4))
    for record in records:
        epochs = [point["epoch"] for point in record["history"] if "valid_cer" in point]
        cers = [point["valid_cer"] for point in record["history"] if "valid_cer" in point]
        curves.plot(epochs, cers, marker="o", label=record["user"])
    curves.set(title="adapter training: held-out CER", xlabel="epoch", ylabel="CER")
    curves.legend()
    positions = range(len(records))
    bars.bar([p - 0.2 for p in positions], [r["base_cer"] for r in records], width=0.4, label="base")
    bars.bar([p + 0.2 for p in positions], [r["adapter_cer"] for r in records], width=0.4, label="base + adapter")
    bars.set_xticks(list(positions), [r["user"] for r in records])
    bars.set(title="test CER per user", ylabel="CER")
    bars.legend()
    figure.tight_layout()
    atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=100))
    plt.close(figure)
    return path
