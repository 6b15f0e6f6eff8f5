"""Per-user evaluation of a recognizer: CER/WER of the base model and of each utterance's own user adapter.

Self-contained on purpose (one function, no helpers elsewhere), so it can later join the trainer's evaluation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

from kospeech.inference.files import transcribe_files
from kospeech.inference.recognizer import Recognizer
from kospeech.metrics import ErrorRateMeter

__all__ = ["evaluate_users"]

PathLike = Union[str, os.PathLike]


def evaluate_users(
    recognizer: Recognizer,
    audio_paths: Sequence[PathLike],
    references: Sequence[str],
    users: Sequence[Optional[str]],
) -> Dict[str, Any]:
    """CER/WER of the base model and of each utterance's own user adapter, per user and overall.

    Every utterance is decoded twice: with the base model, and with its user's adapter in mixed-user batches
    (an utterance without a user, or whose user falls back to the base model, scores the base output in both).

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
    """
    if not len(audio_paths) == len(references) == len(users):
        raise ValueError(
            f"got {len(audio_paths)} audio paths, {len(references)} references and {len(users)} users; "
            "they must pair up"
        )
    files = [Path(path) for path in audio_paths]
    base_hypotheses, adapted_hypotheses, applied = [], [], {}
    for base_run, adapted_run in zip(
        transcribe_files(recognizer, files, [None] * len(files)), transcribe_files(recognizer, files, users)
    ):
        for _, _, result in (base_run, adapted_run):
            if isinstance(result, Exception):
                raise result
        base_hypotheses.append(base_run[2].text)
        adapted_hypotheses.append(adapted_run[2].text)
        applied[adapted_run[1]] = adapted_run[2].adapter is not None
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
