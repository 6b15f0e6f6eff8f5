"""Evaluation: CTC loss, CER and WER of a model on batches (base or adapter output), and per-user CER/WER of a
recognizer (base vs each utterance's own adapter).

Used by the trainers (validation), the training and evaluation jobs, the demo, the examples and the inference
package. It imports neither trainer nor inference code: the loss is a callable the caller passes (the trainers'
:class:`~kospeech.trainer.criterion.CTCLoss`), and :func:`evaluate_users` only calls the recognizer it is given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from kospeech.decode.builder import build_decoder
from kospeech.metrics import ErrorRateMeter
from kospeech.models.utils import unwrap_model
from kospeech.progress import progress_bar
from kospeech.vocabs import Vocabulary

if TYPE_CHECKING:
    from kospeech.inference import Recognizer

PathLike = Union[str, os.PathLike]

__all__ = [
    "EvaluationResult",
    "LossFunction",
    "evaluate",
    "evaluate_base_and_adapter",
    "evaluate_users",
    "select_log_probs",
]

LossFunction = Callable[[Tensor, Tensor, Tensor, Tensor], Any]
"""``loss(log_probs (B, T', C), output_lengths (B,), targets (B, L), target_lengths (B,))`` returning a result with
``loss`` (a scalar tensor), ``num_kept`` and ``num_skipped``, as :class:`~kospeech.trainer.criterion.CTCLoss` does."""


@dataclass
class EvaluationResult:
    """Figures of one split.

    Args:
        loss: mean CTC loss per batch (normalized by target length); ``nan`` when nothing was scored.
        cer: character error rate (spaces removed), corpus level.
        wer: word error rate, corpus level.
        num_utterances: utterances decoded.
        num_skipped: utterances the loss could not align (still decoded and scored).
        pairs: ``(reference, hypothesis)`` per utterance, in loader order.
        cer_kospeech: CER by upstream KoSpeech's formula (spaces and ``_`` removed), corpus level.
        cer_with_spaces: CER with the space counted as a character, corpus level.
    """

    loss: float
    cer: float
    wer: float
    num_utterances: int
    num_skipped: int = 0
    pairs: List[Tuple[str, str]] = field(default_factory=list)
    cer_kospeech: float = float("nan")
    cer_with_spaces: float = float("nan")

    def as_dict(self) -> dict:
        """Numbers only (no pairs), for logs and JSON."""
        return {
            "loss": self.loss,
            "cer": self.cer,
            "wer": self.wer,
            "num_utterances": self.num_utterances,
            "num_skipped": self.num_skipped,
            "cer_kospeech": self.cer_kospeech,
            "cer_with_spaces": self.cer_with_spaces,
        }


def select_log_probs(outputs: Tuple[Tensor, ...], use_adapter_output: bool) -> Tuple[Tensor, Tensor]:
    """Pick ``(log_probs, output_lengths)`` from a DeepSpeech2 forward result.

    A model without an adapter returns ``(log_probs, lengths)``; with one it returns
    ``(base_log_probs, lengths, adapter_log_probs)``.
    """
    if use_adapter_output:
        if len(outputs) != 3:
            raise ValueError("the adapter output was requested but the model has no adapter")
        return outputs[2], outputs[1]
    return outputs[0], outputs[1]


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    batches: Iterable,
    vocab: Vocabulary,
    *,
    loss_fn: Optional[LossFunction] = None,
    device: Union[str, torch.device] = "cpu",
    use_adapter_output: bool = False,
    beam_size: int = 1,
    description: Optional[str] = None,
) -> EvaluationResult:
    """Decode every batch and score it against its references.

    Args:
        model: a DeepSpeech2 (or a DataParallel/DDP wrapper of one); it is put in eval mode and
            its previous mode restored afterwards.
        batches: an iterable of :class:`kospeech.data.dataset.SpeechBatch`.
        vocab: the vocabulary that decodes label ids.
        loss_fn: the CTC loss; ``None`` scores CER/WER only (``loss`` is then ``nan``).
        device: where to run.
        use_adapter_output: score the adapter's output instead of the base head's.
        beam_size: 1 for greedy decoding, more for beam search.
        description: tqdm label; ``None`` hides the progress bar.

    Returns:
        :class:`EvaluationResult`.

    Raises:
        ValueError: ``batches`` held no utterance.
    """
    decoder = build_decoder(vocab, beam_size)
    meter = ErrorRateMeter()
    was_training = model.training
    model.eval()
    total_loss, scored_batches, skipped = 0.0, 0, 0
    pairs: List[Tuple[str, str]] = []
    try:
        for batch in progress_bar(batches, disable=description is None, desc=description, leave=False):
            inputs, input_lengths = batch.inputs.to(device), batch.input_lengths.to(device)
            log_probs, output_lengths = select_log_probs(model(inputs, input_lengths), use_adapter_output)
            if loss_fn is not None:
                loss = loss_fn(log_probs, output_lengths, batch.targets.to(device), batch.target_lengths)
                skipped += loss.num_skipped
                if loss.num_kept:
                    total_loss += float(loss.loss)
                    scored_batches += 1
            hypotheses = [hyp.text for hyp in decoder(log_probs.cpu(), output_lengths.cpu())]
            references = [
                vocab.decode(row[:length].tolist()) for row, length in zip(batch.targets, batch.target_lengths)
            ]
            meter.update(references, hypotheses)
            pairs.extend(zip(references, hypotheses))
    finally:
        model.train(was_training)
    if meter.num_utterances == 0:
        where = f" ({description})" if description else ""
        raise ValueError(f"evaluate{where}: the batches held no utterance; nothing to score")
    return EvaluationResult(
        loss=total_loss / scored_batches if scored_batches else float("nan"),
        cer=meter.cer,
        wer=meter.wer,
        num_utterances=meter.num_utterances,
        num_skipped=skipped,
        pairs=pairs,
        cer_kospeech=meter.cer_kospeech,
        cer_with_spaces=meter.cer_with_spaces,
    )


def evaluate_base_and_adapter(
    model: nn.Module,
    batches: Iterable,
    vocab: Vocabulary,
    *,
    loss_fn: Optional[LossFunction] = None,
    device: Union[str, torch.device] = "cpu",
    beam_size: int = 1,
    description: Optional[str] = None,
) -> Tuple[EvaluationResult, EvaluationResult]:
    """Score the same batches with the adapter bypassed, then with the adapter output.

    Args:
        model: a DeepSpeech2 with an adapter (DataParallel/DDP wrappers are unwrapped for the bypass).
        batches: a re-iterable of :class:`kospeech.data.dataset.SpeechBatch` (e.g. a DataLoader).
        vocab: the vocabulary that decodes label ids.
        loss_fn: the CTC loss (see :func:`evaluate`).
        device: where to run.
        beam_size: 1 for greedy decoding, more for beam search.
        description: tqdm label prefix; ``None`` hides the progress bars.

    Returns:
        ``(base_result, adapter_result)``.
    """
    labels = (None, None) if description is None else (f"{description} (base)", f"{description} (adapter)")
    with unwrap_model(model).disable_adapter():
        base = evaluate(
            model, batches, vocab, loss_fn=loss_fn, device=device, beam_size=beam_size, description=labels[0]
        )
    adapted = evaluate(
        model,
        batches,
        vocab,
        loss_fn=loss_fn,
        device=device,
        use_adapter_output=True,
        beam_size=beam_size,
        description=labels[1],
    )
    return base, adapted


def evaluate_users(
    recognizer: Recognizer,
    audio_paths: Sequence[PathLike],
    references: Sequence[str],
    users: Sequence[Optional[str]],
) -> Dict[str, Any]:
    """CER/WER of the base model and of each utterance's own user adapter, per user and overall.

    Every utterance is decoded twice, ``recognizer.batch_size`` at a time: with the base model, and with its user's
    adapter in mixed-user batches (an utterance without a user, or whose user falls back to the base model, scores
    the base output in both). Any file that cannot be decoded stops the evaluation with its error.

    Args:
        recognizer: the recognizer (its ``adapter_dir`` holds ``<user>_adapter.pt`` files).
        audio_paths: utterance audio files.
        references: their transcripts.
        users: one user (or ``None``) per utterance.

    Returns:
        ``{"overall": {"base": ..., "adapter": ...}, "per_user": {user: {"base": ..., "adapter": ...,
        "adapter_applied": bool}}}`` where each figure is :meth:`ErrorRateMeter.to_dict`; utterances without a user
        are listed under ``"<none>"``.

    Raises:
        ValueError: the three sequences differ in length.
        UnknownUserError, AdapterCompatibilityError, InputError: from :meth:`Recognizer.transcribe`.
    """
    if not len(audio_paths) == len(references) == len(users):
        raise ValueError(
            f"got {len(audio_paths)} audio paths, {len(references)} references and {len(users)} users; "
            "they must pair up"
        )
    files = [Path(path) for path in audio_paths]
    recognizer.resolve_users(users)
    base_hypotheses: List[str] = []
    adapted_hypotheses: List[str] = []
    applied: Dict[Optional[str], bool] = {}
    starts = range(0, len(files), recognizer.batch_size)
    for start in progress_bar(starts, desc="per user (base and adapter)", unit="batch", leave=False):
        chunk, chunk_users = (
            files[start : start + recognizer.batch_size],
            list(users[start : start + recognizer.batch_size]),
        )
        base_hypotheses += [result.text for result in recognizer.transcribe(chunk, user=[None] * len(chunk))]
        for user, result in zip(chunk_users, recognizer.transcribe(chunk, user=chunk_users)):
            adapted_hypotheses.append(result.text)
            applied[user] = result.adapter is not None
    overall = {"base": ErrorRateMeter("base"), "adapter": ErrorRateMeter("adapter")}
    per_user: Dict[str, Dict[str, ErrorRateMeter]] = {}
    for reference, base_text, adapted_text, user in zip(references, base_hypotheses, adapted_hypotheses, users):
        key = "<none>" if user is None else user
        meters = per_user.setdefault(
            key, {"base": ErrorRateMeter(f"{key}/base"), "adapter": ErrorRateMeter(f"{key}/adapter")}
        )
        for meter, text in ((overall["base"], base_text), (overall["adapter"], adapted_text)):
            meter.update([reference], [text])
        meters["base"].update([reference], [base_text])
        meters["adapter"].update([reference], [adapted_text])
    return {
        "overall": {name: meter.to_dict() for name, meter in overall.items()},
        "per_user": {
            key: {
                "base": meters["base"].to_dict(),
                "adapter": meters["adapter"].to_dict(),
                "adapter_applied": applied[None if key == "<none>" else key],
            }
            for key, meters in sorted(per_user.items())
        },
    }
