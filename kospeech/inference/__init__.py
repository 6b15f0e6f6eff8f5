"""Inference: a base DeepSpeech2 checkpoint plus per-user adapters, serving mixed-user batches.

:class:`Recognizer` loads a base checkpoint once (weights, vocabulary and the feature settings it was trained
with) and transcribes audio for any number of users::

    recognizer = Recognizer.from_checkpoint("base.pt", adapter_dir="adapters")
    recognizer.transcribe("hello.wav")                            # base model
    recognizer.transcribe("hello.wav", user="user01")             # user01's adapter
    recognizer.transcribe(["a.wav", "b.wav", "c.wav"], user=["user01", None, "user02"])

A batch may mix users: the frozen trunk runs once for the whole batch and each row then goes through its own
user's adapter (:meth:`DeepSpeech2.forward_mixed`, rows grouped per adapter); a row without a user gets exactly the
base model's output. Adapters are loaded on first use through :meth:`AdapterManager.load_adapter` (which checks
them against the base weights, the vocabulary and the feature settings) and kept in a bounded LRU
:class:`AdapterCache` that notices when a file changes on disk.

Inputs are paths, numpy arrays, torch tensors or ``(waveform, sample_rate)`` pairs, checked (and unusable ones
refused, naming the input) before any model computation. Only the speech in an input is decoded: a voice activity
detector drops leading and trailing silence and cuts at pauses, regions longer than ``chunk_seconds`` (30 s) are
cut at quiet points, and files longer than one segment are streamed from disk, so memory stays bounded for
hour-long files; segment texts are joined with a space, all times are relative to the start of the input.
Transcripts come with calibrated confidences and, on request, word and token timings; SubRip and WebVTT
subtitles are built from them.

Modules, one concept each:

- :mod:`~kospeech.inference.recognizer`: :class:`Recognizer`, :class:`UnknownUserError`.
- :mod:`~kospeech.inference.records`: :class:`Transcription`, :class:`TranscriptSegment`, :class:`WordTiming`,
  :class:`TokenTimestamp`, :class:`CacheStats`.
- :mod:`~kospeech.inference.confidence`: raw and calibrated word and utterance confidences, AUROC.
- :mod:`~kospeech.inference.subtitles`: :func:`to_srt`, :func:`to_vtt`.
- :mod:`~kospeech.inference.adapter_cache`: :class:`AdapterCache`.
- :mod:`~kospeech.inference.audio_inputs`: coercing one input into a checked mono waveform (or a file to stream).
- :mod:`~kospeech.inference.segmentation`: speech regions of an input, long ones cut at quiet points, streamed.
- :mod:`~kospeech.inference.files`: :func:`collect_audio_files`, :func:`read_user_map`, :func:`user_map_key`,
  :func:`users_for_files`, :func:`transcribe_files`.
- :func:`evaluate_users` (per-user CER/WER, base vs adapter) lives in :mod:`kospeech.evaluation`, shared with the
  trainers; it is re-exported here.
"""

from kospeech.evaluation import evaluate_users
from kospeech.inference.adapter_cache import AdapterCache
from kospeech.inference.confidence import ConfidenceCalibration
from kospeech.inference.files import (
    AUDIO_EXTENSIONS,
    collect_audio_files,
    read_user_map,
    transcribe_files,
    user_map_key,
    users_for_files,
)
from kospeech.inference.recognizer import PreparedAudio, Recognizer, UnknownUserError
from kospeech.inference.records import CacheStats, TokenTimestamp, Transcription, TranscriptSegment, WordTiming
from kospeech.inference.subtitles import to_srt, to_vtt

__all__ = [
    "AUDIO_EXTENSIONS",
    "AdapterCache",
    "CacheStats",
    "ConfidenceCalibration",
    "PreparedAudio",
    "Recognizer",
    "TokenTimestamp",
    "TranscriptSegment",
    "Transcription",
    "UnknownUserError",
    "WordTiming",
    "collect_audio_files",
    "evaluate_users",
    "read_user_map",
    "to_srt",
    "to_vtt",
    "transcribe_files",
    "user_map_key",
    "users_for_files",
]
