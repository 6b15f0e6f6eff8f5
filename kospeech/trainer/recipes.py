"""The training jobs behind ``bin/main.py``, callable from Python without Hydra.

``train_base_model`` trains a DeepSpeech2 from scratch; ``train_adapter_model`` trains one user's
adapter on a frozen base checkpoint. Both take the composed job config (a ``TrainJobConfig`` or the
equivalent ``DictConfig``) whose paths are already absolute or relative to the current directory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from omegaconf import DictConfig, OmegaConf

from kospeech.checkpoint import load_checkpoint
from kospeech.data.features import FeatureConfig
from kospeech.data.manifest import read_manifest
from kospeech.data.synthetic import ensure_corpus
from kospeech.device import resolve_device
from kospeech.errors import ConfigError, ManifestError
from kospeech.evaluation import evaluate, evaluate_base_and_adapter
from kospeech.fileio import atomic_write_json
from kospeech.model_builder import DeepSpeech2Config, build_deepspeech2
from kospeech.trainer.adapter_trainer import AdapterTrainer
from kospeech.trainer.configs import AdapterTrainConfig, DataConfig, TrainConfig
from kospeech.trainer.supervised_trainer import SupervisedTrainer
from kospeech.vocabs import Vocabulary

__all__ = ["DataSources", "resolve_data", "to_dataclass", "write_results", "train_base_model", "train_adapter_model"]

logger = logging.getLogger(__name__)


@dataclass
class DataSources:
    """Resolved manifest and vocabulary paths of a job (``None`` where there is none)."""

    train_manifest: Path
    valid_manifest: Optional[Path]
    test_manifest: Optional[Path]
    vocab_path: Optional[Path]


def to_dataclass(node: Any, schema: type) -> Any:
    if isinstance(node, schema):
        return node
    values = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))


def resolve_data(data: DataConfig, adapter: bool = False) -> DataSources:
    """Pick the manifests of a job, building the built-in corpus first when the job relies on it.

    Without explicit manifests, base training uses the corpus' ``base/{train,dev,test}.tsv`` and
    adapter training uses ``users/<data.user>/enroll.tsv`` (validation: a held-out part of it) and
    ``users/<data.user>/test.tsv``. The corpus is built only for a job that reads it: an adapter job on its own
    manifest without ``data.vocab_path`` uses the base checkpoint's vocabulary (``vocab_path`` is then ``None``),
    and base training on its own manifest must name its vocabulary.

    Raises:
        ConfigError: base training with ``data.train_manifest`` but no ``data.vocab_path``.
        ValueError: the built-in user ``data.user`` does not exist.
    """
    own_manifest = data.train_manifest is not None
    if own_manifest and data.vocab_path is None and not adapter:
        raise ConfigError(
            "data.train_manifest is set but data.vocab_path is not: base training on your own manifests needs the "
            "vocabulary CSV of their labels (set data.vocab_path=...)"
        )
    corpus_dir = Path(data.corpus_dir)
    if not own_manifest:
        ensure_corpus(corpus_dir, preset=data.corpus_preset, seed=data.corpus_seed)
    if adapter:
        user_dir = corpus_dir / "users" / data.user
        default_train, default_valid, default_test = user_dir / "enroll.tsv", None, user_dir / "test.tsv"
        if not own_manifest and not user_dir.is_dir():
            users = sorted(path.name for path in (corpus_dir / "users").glob("*") if path.is_dir())
            raise ValueError(f"unknown built-in user {data.user!r}; the corpus in {corpus_dir} has {users}")
    else:
        base_dir = corpus_dir / "base"
        default_train, default_valid, default_test = base_dir / "train.tsv", base_dir / "dev.tsv", base_dir / "test.tsv"
    if data.vocab_path:
        vocab_path: Optional[Path] = Path(data.vocab_path)
    else:
        vocab_path = None if own_manifest else corpus_dir / "vocab.csv"
    return DataSources(
        train_manifest=Path(data.train_manifest) if own_manifest else default_train,
        valid_manifest=Path(data.valid_manifest) if data.valid_manifest else default_valid,
        test_manifest=None if own_manifest or not default_test.exists() else default_test,
        vocab_path=vocab_path,
    )


def write_results(output_dir: Path, results: Dict[str, Any]) -> Path:
    return atomic_write_json(output_dir / "results.json", results)


def train_base_model(job: Any) -> Dict[str, Any]:
    """Train a DeepSpeech2 on the job's data; returns (and writes to ``results.json``) its figures.

    Args:
        job: a ``TrainJobConfig`` or a ``DictConfig`` with ``audio``, ``model``, ``data``, ``train``.

    Returns:
        ``checkpoint`` (best weights), per-split ``valid``/``test`` figures and the run folder; on the other ranks of
        a DistributedDataParallel job only ``rank`` and ``steps`` (they neither evaluate nor write files).
    """
    train_config: TrainConfig = to_dataclass(job.train, TrainConfig)
    feature_config: FeatureConfig = to_dataclass(job.audio, FeatureConfig).validate()
    empty = feature_config.empty_mel_filters()
    if empty:
        raise ConfigError(
            f"{empty} of audio.num_mels={feature_config.num_mels} mel filters hold no FFT bin (their features would "
            f"be constant) with audio.frame_length_ms={feature_config.frame_length_ms}, audio.f_min={feature_config.f_min}"
            f" and audio.f_max={feature_config.f_max}: use fewer mels, a longer window or a wider band"
        )
    model_config: DeepSpeech2Config = to_dataclass(job.model, DeepSpeech2Config)
    data = to_dataclass(job.data, DataConfig)
    sources = resolve_data(data)
    manifest_vocab = Vocabulary.from_csv(sources.vocab_path)
    vocab = manifest_vocab.with_unit(data.unit)
    # other output units than the manifests were written with re-encode every line, as asked: no warning
    relabel = True if vocab.unit != manifest_vocab.unit else None
    train_entries = read_manifest(sources.train_manifest, vocab, relabel=relabel)
    valid_entries = _held_out(sources.valid_manifest, vocab, relabel) or []
    test_entries = _held_out(sources.test_manifest, vocab, relabel)

    torch.manual_seed(train_config.seed)
    model = build_deepspeech2(feature_config.feature_dim, len(vocab), model_config)
    model_record = {"input_dim": feature_config.feature_dim, "num_classes": len(vocab), **_plain(model_config)}
    if train_config.init_from:
        _initialize_from(model, vocab, Path(train_config.init_from))
    resolved = _plain(job)
    trainer = SupervisedTrainer(
        train_config, vocab, feature_config, train_entries, valid_entries, model_record, resolved_config=resolved
    )
    model = trainer.train(model)
    if not trainer.dist.is_main:
        # under torchrun rank 0 alone scores the held-out splits and writes results.json
        return {"rank": trainer.dist.rank, "steps": trainer.state.global_step}

    output_dir = Path(train_config.output_dir)
    results: Dict[str, Any] = {
        "checkpoint": str(output_dir / ("best.pt" if (output_dir / "best.pt").exists() else "last.pt")),
        "output_dir": str(output_dir),
        "steps": trainer.state.global_step,
        "train_seconds": round(trainer.state.elapsed_seconds, 1),
        "skipped_steps": trainer.state.skipped_steps,
        "skipped_utterances": trainer.state.skipped_utterances,
    }
    loaders = {
        "valid": trainer.build_loader(trainer.valid_entries, train_config.batch_size, train=False)
        if trainer.valid_entries
        else None,  # screened before training
        "test": trainer.scoring_loader(test_entries, "test") if test_entries else None,
    }
    for split, loader in loaders.items():
        if loader is not None:
            result = evaluate(
                model,
                loader,
                vocab,
                loss_fn=trainer.criterion,
                device=trainer.device,
                beam_size=train_config.beam_size,
                description=split,
            )
            results[split] = result.as_dict()
            logger.info("%s: CER %.4f WER %.4f (%d utterances)", split, result.cer, result.wer, result.num_utterances)
    results["excluded_utterances"] = [item._asdict() for item in trainer.excluded_utterances]
    write_results(output_dir, results)
    return results


def _held_out(manifest: Optional[Path], vocab: Vocabulary, relabel: Optional[bool] = None) -> Optional[list]:
    """The entries of a job's validation or test manifest (``None`` without one), read before training so that a
    bad one fails before the work, not after it.

    Raises:
        FileNotFoundError, ManifestError: the manifest cannot be read (naming it).
        ManifestError: it holds no utterance (naming it).
    """
    if manifest is None:
        return None
    entries = read_manifest(manifest, vocab, relabel=relabel)
    if not entries:
        raise ManifestError(f"the manifest {manifest} holds no utterances: give one that does, or none")
    return entries


def _initialize_from(model: torch.nn.Module, vocab: Vocabulary, path: Path) -> None:
    """Load a base checkpoint's weights into a new base model of the same architecture and vocabulary.

    Raises:
        ConfigError: the checkpoint's weights or vocabulary do not fit the job's model (naming the file).
    """
    checkpoint = load_checkpoint(path)
    if checkpoint.vocab != vocab:
        raise ConfigError(f"train.init_from={path}: its vocabulary differs from this job's")
    try:
        model.load_state_dict(checkpoint.model_state_dict)
    except RuntimeError as exc:
        raise ConfigError(f"train.init_from={path}: its weights do not fit this job's model: {exc}") from exc
    logger.info("initialized the base from %s", path)


def train_adapter_model(job: Any) -> Dict[str, Any]:
    """Train one user's adapter on a frozen base checkpoint; returns (and writes) its figures.

    Args:
        job: a ``TrainJobConfig``/``DictConfig`` whose ``train`` node is an ``AdapterTrainConfig``.

    Returns:
        ``adapter_path``, whether it was ``rejected`` (with ``rejected_reason``, and ``previous_adapter_kept``: an
        accepted adapter was active and stays so, the rejected one went to the versions), parameter counts, base vs adapter CER on the held-out part and on the user's test set when
        there is one, the warm start's figures, and training time.
    """
    config: AdapterTrainConfig = to_dataclass(job.train, AdapterTrainConfig)
    if config.init_from:
        raise ConfigError("train.init_from applies to base training; an adapter starts from train.base_model_path")
    data = to_dataclass(job.data, DataConfig)
    checkpoint = load_checkpoint(config.base_model_path)
    vocab, feature_config = checkpoint.vocab, checkpoint.feature_config
    _warn_architecture_differences(config, checkpoint.model_config)
    sources = resolve_data(data, adapter=True)
    if sources.vocab_path is not None and Vocabulary.from_csv(sources.vocab_path).with_unit(vocab.unit) != vocab:
        raise ValueError(
            f"{sources.vocab_path} differs from the vocabulary of the base model {config.base_model_path}: "
            "an adapter must use its base model's vocabulary"
        )
    train_entries = read_manifest(sources.train_manifest, vocab)
    valid_entries = _held_out(sources.valid_manifest, vocab)
    test_entries = _held_out(sources.test_manifest, vocab)

    torch.manual_seed(config.seed)
    model = checkpoint.build_model(device=resolve_device(config.device))
    # what the run used: the base checkpoint's features and architecture, not the config groups' defaults
    resolved = {**_plain(job), "audio": feature_config.to_dict(), "model": dict(checkpoint.model_config)}
    trainer = AdapterTrainer(
        config, vocab, feature_config, train_entries, valid_entries, checkpoint.model_config, resolved_config=resolved
    )
    model = trainer.train(model, adapter_name=config.adapter_name)
    stats = trainer.training_stats()
    results: Dict[str, Any] = {
        "adapter_name": config.adapter_name,
        "adapter_path": str(trainer.adapter_path) if trainer.adapter_path else None,
        "adapter_type": model.adapter_type,
        "trainable_params": stats["trainable_params"],
        "total_params": stats["total_params"],
        "heldout_base_cer": stats["cer_before"],
        "heldout_adapter_cer": stats["cer_after"],
        **trainer.outcome,
        "warm_start": stats["warm_start"],
        "train_seconds": stats["train_seconds"],
        "skipped_steps": stats["skipped_steps"],
    }
    loader = trainer.scoring_loader(test_entries, "test") if test_entries else None
    if loader is not None:
        base, adapted = evaluate_base_and_adapter(
            model, loader, vocab, loss_fn=trainer.criterion, device=trainer.device, description="test"
        )
        results.update(test_base_cer=base.cer, test_adapter_cer=adapted.cer, test_utterances=adapted.num_utterances)
        logger.info("user test set: base CER %.4f -> adapter CER %.4f", base.cer, adapted.cer)
    results["excluded_utterances"] = [item._asdict() for item in trainer.excluded_utterances]
    write_results(Path(config.output_dir), results)
    return results


def _plain(config: Any) -> Dict[str, Any]:
    """A dataclass or DictConfig as plain, resolved containers (for config.yaml and checkpoints)."""
    node = config if isinstance(config, DictConfig) else OmegaConf.structured(config)
    return OmegaConf.to_container(node, resolve=True)


def _warn_architecture_differences(config: AdapterTrainConfig, model_config: Dict[str, Any]) -> None:
    for key in ("rnn_type", "num_rnn_layers", "rnn_hidden_dim", "dropout_p", "activation"):
        recorded = model_config.get(key)
        if recorded is not None and recorded != getattr(config, key):
            logger.info(
                "base checkpoint has %s=%r (config says %r): using the checkpoint's",
                key,
                recorded,
                getattr(config, key),
            )
