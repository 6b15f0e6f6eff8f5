r"""``kospeech-eval``: CER/WER of a checkpoint, optionally with a user's adapter, on a manifest (Hydra).

    python bin/eval.py checkpoint_path=runs/ds2_train/best.pt manifest_path=data/corpus_demo/base/test.tsv
    python bin/eval.py checkpoint_path=pretrained/ds2_synthetic.pt adapter_path=runs/demo/adapters/user01_adapter.pt \
        manifest_path=data/demo_users/users/user01/test.tsv

Figures go to ``{output_dir}/results.json`` (default ``runs/eval/<date>_<time>/``) and to stdout as JSON.
"""

import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import hydra
from omegaconf import DictConfig

from kospeech.checkpoint import load_checkpoint
from kospeech.cli.common import (
    absolutize_paths,
    config_dir,
    one_line_errors,
    own_folder_in_a_sweep,
    record_resolved_config,
    refuse_unknown_settings,
    refuse_unusable_output_folders,
    register_help,
    setup_logging,
    take_verbose_flag,
)
from kospeech.config import register_configs
from kospeech.data.dataset import build_dataloader
from kospeech.data.features import FeatureExtractor
from kospeech.data.manifest import ManifestEntry, read_manifest
from kospeech.device import resolve_device
from kospeech.errors import ConfigError, ManifestError
from kospeech.evaluation import EvaluationResult, evaluate
from kospeech.fileio import strict_json
from kospeech.inference import Recognizer, evaluate_users, read_user_map, user_map_key
from kospeech.models import AdapterManager
from kospeech.trainer.configs import DataConfig
from kospeech.trainer.criterion import CTCLoss
from kospeech.trainer.recipes import resolve_data, to_dataclass, write_results

__all__ = ["evaluate_checkpoint", "main"]

logger = logging.getLogger(__name__)


def evaluate_checkpoint(job: Any) -> Dict[str, Any]:
    """CER/WER of a checkpoint (plus an optional adapter) on a manifest; writes ``results.json``.

    Args:
        job: an ``EvalConfig`` or equivalent ``DictConfig`` (``checkpoint_path``, ``manifest_path``,
            ``adapter_path``, ``data``, ``batch_size``, ``beam_size``, ``device``, ``output_dir``; optionally
            ``adapter_dir``, ``user_map``, ``fallback_to_base`` for per-user figures).

    Returns:
        The figures of the base model (``cer``, ``cer_kospeech``, ``cer_with_spaces``, ``wer``, see
        :mod:`kospeech.metrics`) and, with an adapter, of the adapter output on the same data; with
        ``adapter_dir``, also ``per_user``: base and own-adapter CER/WER per user and overall
        (:func:`kospeech.inference.evaluate_users`).
    """
    checkpoint = load_checkpoint(job.checkpoint_path)
    vocab, feature_config = checkpoint.vocab, checkpoint.feature_config
    device = resolve_device(job.device)
    model = checkpoint.build_model(device=device)
    if job.manifest_path:
        manifest = Path(job.manifest_path)
    elif job.data.train_manifest is not None:
        raise ConfigError(
            "set manifest_path=... (the utterances to score, e.g. data/kspon/eval_clean.tsv): these data settings "
            "name training manifests, and the built-in corpus' test set is scored only without them"
        )
    else:
        manifest = resolve_data(to_dataclass(job.data, DataConfig)).test_manifest
        if manifest is None:
            raise ConfigError(
                f"set manifest_path=... (the utterances to score): the corpus in {job.data.corpus_dir} has no base "
                "test set"
            )
        logger.info("no manifest_path given: scoring the built-in corpus' base test set %s", manifest)
    entries = read_manifest(manifest, vocab, relabel=True)  # ids come from the checkpoint's own vocabulary
    if not entries:
        raise ManifestError(f"the manifest {manifest} holds no utterances: nothing to score")
    if job.adapter_path:  # a missing or damaged adapter fails now, not after the base model is scored
        AdapterManager.get_adapter_info(job.adapter_path)
    # likewise every user's adapter, before the base pass over the whole manifest
    per_user = _users_and_recognizer(job, entries) if getattr(job, "adapter_dir", None) else None
    loader = build_dataloader(entries, FeatureExtractor(feature_config).without_dither(), job.batch_size, shuffle=False)
    results: Dict[str, Any] = {"checkpoint": str(job.checkpoint_path), "manifest": str(manifest)}
    loss_fn = CTCLoss(vocab.blank_id)
    base_model_output = evaluate(
        model, loader, vocab, loss_fn=loss_fn, device=device, beam_size=job.beam_size, description="base"
    )
    results["base"] = base_model_output.as_dict()
    _log_cer("base", base_model_output)
    if job.adapter_path:
        info = AdapterManager.load_adapter(
            model, job.adapter_path, vocab_fingerprint=vocab.fingerprint(), feature_config=feature_config.to_dict()
        )
        model.eval()
        adapted = evaluate(
            model,
            loader,
            vocab,
            loss_fn=loss_fn,
            device=device,
            use_adapter_output=True,
            beam_size=job.beam_size,
            description="adapter",
        )
        results["adapter"] = {"path": str(job.adapter_path), "name": info.get("adapter_name"), **adapted.as_dict()}
        _log_cer("adapter", adapted)
    if per_user is not None:
        results["per_user"] = _evaluate_per_user(job, entries, *per_user)
    write_results(Path(job.output_dir), results)
    return results


def _log_cer(label: str, result: EvaluationResult) -> None:
    """One console line with the three CER figures, named as in ``results.json``."""
    logger.info(
        "%s: cer %.4f (spaces removed), cer_kospeech %.4f (KoSpeech's formula), cer_with_spaces %.4f, wer %.4f",
        label,
        result.cer,
        result.cer_kospeech,
        result.cer_with_spaces,
        result.wer,
    )


def _users_and_recognizer(job: Any, entries: List[ManifestEntry]) -> Tuple[List[Optional[str]], Recognizer]:
    """Each utterance's user and a recognizer over ``job.adapter_dir`` whose adapters for them are checked (loaded).

    The user of an utterance comes from ``job.user_map`` when it lists the audio file, else from the manifest's
    speaker column; utterances without a user are scored with the base model.

    Raises:
        UnknownUserError: a user without an adapter (unless ``job.fallback_to_base``).
    """
    user_map_path = getattr(job, "user_map", None)
    user_map = read_user_map(user_map_path) if user_map_path else {}
    users = [user_map.get(user_map_key(entry.audio_path), entry.speaker) for entry in entries]
    recognizer = Recognizer.from_checkpoint(
        job.checkpoint_path,
        adapter_dir=job.adapter_dir,
        device=resolve_device(job.device),
        fallback_to_base=bool(getattr(job, "fallback_to_base", False)),
        beam_size=job.beam_size,
        batch_size=job.batch_size,
    )
    recognizer.resolve_users(users)
    return users, recognizer


def _evaluate_per_user(
    job: Any, entries: List[ManifestEntry], users: List[Optional[str]], recognizer: Recognizer
) -> Dict[str, Any]:
    """CER/WER per user and overall, each utterance with its own user's adapter (mixed-user batches)."""
    paths = [entry.audio_path for entry in entries]
    figures = evaluate_users(recognizer, paths, [entry.transcript for entry in entries], users)
    for user, values in figures["per_user"].items():
        logger.info("user %s: base CER %.4f -> adapter CER %.4f", user, values["base"]["cer"], values["adapter"]["cer"])
    return {"adapter_dir": str(job.adapter_dir), **figures}


register_configs()
register_help()


@hydra.main(config_path=config_dir(), config_name="eval", version_base="1.3")
@one_line_errors
def hydra_main(config: DictConfig) -> None:
    """The Hydra job: score, write ``{output_dir}/results.json``, print the figures as JSON on stdout."""
    refuse_unknown_settings(config)
    own_folder_in_a_sweep(config, "output_dir")
    absolutize_paths(config)
    setup_logging(Path(config.output_dir) / "eval.log")
    record_resolved_config(config, Path(config.output_dir))
    results = evaluate_checkpoint(config)
    sys.stderr.flush()  # the progress bars and logs (stderr) end before the JSON starts on stdout
    print(strict_json(results))


def main() -> None:
    """``kospeech-eval`` (and ``python bin/eval.py``); ``-v`` / ``--verbose`` shows DEBUG logs and tracebacks."""
    take_verbose_flag()
    refuse_unusable_output_folders(sys.argv[1:], "output_dir")
    hydra_main()


if __name__ == "__main__":
    main()
