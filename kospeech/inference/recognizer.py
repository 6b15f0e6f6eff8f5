"""The :class:`Recognizer`: a frozen base DeepSpeech2 plus per-user adapters, serving mixed-user batches.

It checks every user and every input first (:mod:`kospeech.inference.audio_inputs`), cuts each input into
segments of speech (:mod:`kospeech.inference.segmentation`), turns them into the features the checkpoint was trained with,
runs them ``batch_size`` segments at a time through one mixed-adapter forward pass
(:meth:`DeepSpeech2.forward_mixed`), decodes (greedy or beam search) and joins each input's segments into one
:class:`~kospeech.inference.records.Transcription`. Adapters come from an
:class:`~kospeech.inference.adapter_cache.AdapterCache` over ``adapter_dir``, or from any cache with the
:class:`~kospeech.inference.adapter_cache.AdapterSource` interface built by ``adapter_cache_factory`` around
:meth:`Recognizer.load_adapter`; a user without one raises :class:`UnknownUserError`
unless ``fallback_to_base``. A user whose adapter was rejected at training (no better than the base on their
held-out utterances) gets the base model, logged once per load and counted in :meth:`Recognizer.cache_stats`,
unless ``allow_rejected``.

Each transcript carries its segments' times, and on request per-token and per-word times and probabilities;
its ``confidence`` and the words' are calibrated probabilities (:mod:`kospeech.inference.confidence`).

Documented behaviour: audio shorter than one feature window (20 ms by default), and audio in which the voice
activity detector finds no speech, give an empty transcript (``num_segments == 0``, ``confidence == 0.0``) with a
logged warning.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from kospeech.checkpoint import load_checkpoint
from kospeech.data.features import FeatureConfig, FeatureExtractor
from kospeech.data.voice_activity import VoiceActivityConfig
from kospeech.decode import CTCHypothesis, TokenSpan, build_decoder, check_beam_size, spelling_tokens, token_spans
from kospeech.device import resolve_device
from kospeech.errors import UnknownUserError
from kospeech.inference.adapter_cache import AdapterCache, AdapterLoader, AdapterSource
from kospeech.inference.audio_inputs import AudioInput, AudioItem, prepare_input
from kospeech.inference.confidence import ConfidenceCalibration, utterance_confidence, word_confidence
from kospeech.inference.records import CacheStats, TokenTimestamp, Transcription, TranscriptSegment, WordTiming
from kospeech.inference.segmentation import item_segments
from kospeech.models import AdapterCompatibilityError, AdapterManager, AdapterRouter, DeepSpeech2, validate_adapter_name
from kospeech.models.adapter import AdapterModule
from kospeech.vocabs import Vocabulary

__all__ = ["Recognizer", "PreparedAudio", "UnknownUserError", "MIN_CHUNK_SECONDS", "MAX_CHUNK_SECONDS"]

logger = logging.getLogger(__name__)

MIN_CHUNK_SECONDS = 1.0
"""Shortest segment length accepted: a shorter cut splits syllables, so every segment decodes to little or nothing."""

MAX_CHUNK_SECONDS = 600.0
"""Longest segment length accepted: the bidirectional RNN holds a whole segment, so memory grows with it."""

PathLike = Union[str, os.PathLike]


@dataclass
class _Segment:
    offset_seconds: float
    duration_seconds: float
    features: Optional[Tensor]  # (T, D); None once prepare has run the extractor (only its output is needed then)
    extracted: Optional[Tensor] = None  # (T', F_conv) the model's extractor output, when prepare ran the extractor


@dataclass
class PreparedAudio:
    """One input cut into speech segments with their features, ready for the model (:meth:`Recognizer.prepare`).

    Preparing runs at most the model's extractor: a server prepares each request on its own thread, in parallel,
    and hands the model thread only what batches (:meth:`Recognizer.transcribe_prepared`). Holds every segment's
    features (or, prepared with the extractor, only its output) at once, so it is meant for inputs of bounded length
    (a long file is better given to :meth:`Recognizer.transcribe`, which streams it).
    """

    item: AudioItem
    segments: List[_Segment]


@dataclass
class _Accumulator:
    texts: List[str] = field(default_factory=list)
    tokens: List[int] = field(default_factory=list)
    timestamps: List[TokenTimestamp] = field(default_factory=list)
    words: List[WordTiming] = field(default_factory=list)
    segments: List[TranscriptSegment] = field(default_factory=list)
    probabilities: List[float] = field(default_factory=list)
    score: float = 0.0
    num_frames: int = 0
    num_segments: int = 0


def _seconds(value: float) -> float:
    """Round a time to 0.1 ms (timestamps are far coarser; this only hides float noise in JSON)."""
    return round(value, 4)


class Recognizer:
    """Speech -> text with a frozen base model and per-user adapters (see :mod:`kospeech.inference`).

    Args:
        model: the base :class:`DeepSpeech2`; an attached adapter is detached (per-user adapters come from
            ``adapter_dir``). The model is put in eval mode with gradients off and must stay so.
        vocab: the vocabulary the model was trained with.
        feature_config: the feature settings the model was trained with (read from the checkpoint); its ``dither``
            is a training setting, not applied when transcribing.
        adapter_dir: directory of ``<user>_adapter.pt`` files, or ``None`` for the base model only.
        cache_size: the most adapters kept in memory (LRU).
        adapter_cache_factory: instead of ``adapter_dir``, builds the adapter cache to serve from, given this
            recognizer's :meth:`load_adapter` (e.g. ``lambda loader: MyCache(..., loader)``); what it returns must
            have the :class:`~kospeech.inference.adapter_cache.AdapterSource` interface and is kept as
            :attr:`cache`.
        fallback_to_base: transcribe users without an adapter with the base model (logged) instead of raising
            :class:`UnknownUserError`.
        allow_rejected: serve adapters that training rejected (no better than the base on the user's held-out
            utterances) instead of the base model.
        beam_size: 1 for greedy CTC decoding, more for prefix beam search.
        batch_size: segments run through the model at once.
        chunk_seconds: longest segment; longer audio is cut (see :mod:`kospeech.inference.segmentation`).
        split_search_seconds: how far back from a segment's end the quietest cut point is searched.
        detect_speech: decode only the speech regions the voice activity detector finds (``False``: every input
            is decoded whole, silence included).
        voice_activity: the detector's settings (default :class:`VoiceActivityConfig()`).
        confidence_calibration: maps of raw to calibrated confidences (default: the identity; a checkpoint
            carries its own, see :meth:`from_checkpoint`).
    """

    def __init__(
        self,
        model: DeepSpeech2,
        vocab: Vocabulary,
        feature_config: FeatureConfig,
        *,
        adapter_dir: Optional[PathLike] = None,
        cache_size: int = 32,
        adapter_cache_factory: Optional[Callable[[AdapterLoader], AdapterSource]] = None,
        fallback_to_base: bool = False,
        allow_rejected: bool = False,
        beam_size: int = 1,
        batch_size: int = 16,
        chunk_seconds: float = 30.0,
        split_search_seconds: float = 3.0,
        detect_speech: bool = True,
        voice_activity: Optional[VoiceActivityConfig] = None,
        confidence_calibration: Optional[ConfidenceCalibration] = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if (
            isinstance(chunk_seconds, bool)
            or not isinstance(chunk_seconds, (int, float))
            or not MIN_CHUNK_SECONDS <= chunk_seconds <= MAX_CHUNK_SECONDS
        ):
            raise ValueError(
                f"chunk_seconds must be a number from {MIN_CHUNK_SECONDS} to {MAX_CHUNK_SECONDS} (seconds of audio "
                f"per forward pass), got {chunk_seconds!r}"
            )
        if not 0 <= split_search_seconds < chunk_seconds:
            raise ValueError(
                f"need 0 <= split_search_seconds < chunk_seconds, got {split_search_seconds!r} and {chunk_seconds!r}"
            )
        check_beam_size(beam_size)
        if adapter_dir is not None and adapter_cache_factory is not None:
            raise ValueError("give adapter_dir or adapter_cache_factory, not both")
        if len(vocab) != model.num_classes:
            raise ValueError(f"the vocabulary has {len(vocab)} tokens but the model {model.num_classes} classes")
        extractor = FeatureExtractor(feature_config)
        self.feature_config = extractor.config
        # no dither when transcribing: the same audio gives the same answer, and the caller's torch RNG is left alone
        self.feature_extractor = extractor.without_dither()
        if self.feature_config.feature_dim != model.input_dim:
            raise ValueError(
                f"the features have {self.feature_config.feature_dim} bins but the model expects {model.input_dim}"
            )
        if model.adapter is not None:
            logger.info("detaching the %s adapter stored with the base model", model.adapter_type)
            model.remove_adapter()
        self.model = model.eval().requires_grad_(False)
        self.vocab = vocab
        self.fallback_to_base = bool(fallback_to_base)
        self.allow_rejected = bool(allow_rejected)
        self.batch_size = batch_size
        self.chunk_seconds = float(chunk_seconds)
        self.split_search_seconds = float(split_search_seconds)
        self.voice_activity = (voice_activity or VoiceActivityConfig()).validate() if detect_speech else None
        self.calibration = confidence_calibration or ConfidenceCalibration()
        self.beam_size = beam_size
        self.decoder = build_decoder(vocab, beam_size)
        self._space_id = vocab.tokens.index(" ") if " " in vocab.tokens else None
        self._vocab_fingerprint = vocab.fingerprint()
        self._base_fingerprint: Optional[str] = None
        self._feature_dict = self.feature_config.to_dict()
        self._special_ids = {vocab.pad_id, vocab.sos_id, vocab.eos_id, vocab.blank_id}
        # seconds per output frame: input frames are hop_length samples apart, the conv stride halves them
        probe = 1 << 16
        stride = probe // int(model.output_lengths(torch.tensor([probe]))[0])
        self.frame_seconds = stride * self.feature_config.hop_length / self.feature_config.sample_rate
        self.cache: Optional[AdapterSource] = None
        if adapter_dir is not None:
            self.cache = AdapterCache(adapter_dir, self.load_adapter, cache_size)
        elif adapter_cache_factory is not None:
            cache = adapter_cache_factory(self.load_adapter)
            if not isinstance(cache, AdapterSource):
                raise TypeError(
                    f"adapter_cache_factory returned a {type(cache).__name__}, which lacks the AdapterSource "
                    "interface (adapter_dir, get, available, stats)"
                )
            self.cache = cache

    @classmethod
    def from_checkpoint(
        cls,
        base_path: PathLike,
        adapter_dir: Optional[PathLike] = None,
        device: Union[str, torch.device] = "cpu",
        cache_size: int = 32,
        fallback_to_base: bool = False,
        beam_size: int = 1,
        **kwargs: Any,
    ) -> Recognizer:
        """Load a base checkpoint (weights, vocabulary, feature settings) once.

        Args:
            base_path: a checkpoint written by :func:`kospeech.checkpoint.save_checkpoint`.
            adapter_dir: directory of ``<user>_adapter.pt`` files, or ``None``.
            device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
            cache_size: the most adapters kept in memory.
            fallback_to_base: use the base model for users without an adapter instead of raising.
            beam_size: 1 for greedy decoding, more for beam search.
            **kwargs: ``adapter_cache_factory``, ``allow_rejected``, ``batch_size``, ``chunk_seconds``,
                ``split_search_seconds``, ``detect_speech``, ``voice_activity`` (see the class).

        Raises:
            FileNotFoundError: no checkpoint file, or ``adapter_dir`` is not a directory.
            ValueError: not a valid checkpoint.
        """
        checkpoint = load_checkpoint(base_path)
        model = checkpoint.build_model(device=resolve_device(device))
        logger.info("loaded base model %s (%d classes) on %s", base_path, model.num_classes, model.device)
        return cls(
            model,
            checkpoint.vocab,
            checkpoint.feature_config,
            adapter_dir=adapter_dir,
            cache_size=cache_size,
            fallback_to_base=fallback_to_base,
            beam_size=beam_size,
            confidence_calibration=ConfidenceCalibration.from_dict(checkpoint.confidence_calibration),
            **kwargs,
        )

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        return self.model.device

    # ------------------------------------------------------------------ users and adapters

    def load_adapter(self, path: Path) -> Optional[AdapterModule]:
        """Read one adapter file and check it against this base (the cache's loader); eval mode, no gradients.

        The file is read without touching the shared model (:meth:`AdapterManager.read_adapter`); the base's
        fingerprint is computed once, on the first load.

        Args:
            path: an adapter file.

        Returns:
            The adapter on the model's device, or ``None`` for an adapter rejected at training (the base serves
            the user) unless ``allow_rejected``.

        Raises:
            AdapterCompatibilityError: made for another base model, vocabulary or feature settings, or of other
                sizes. ValueError / CheckpointError: not a valid adapter file.
        """
        adapter, info = AdapterManager.read_adapter(path)
        try:
            self.model.check_adapter_fits(adapter)
        except AdapterCompatibilityError as exc:
            raise AdapterCompatibilityError(
                f"{path}: {exc} (force=True cannot override sizes)", exc.mismatches
            ) from exc
        if self._base_fingerprint is None:
            self._base_fingerprint = self.model.base_fingerprint()
        AdapterManager.check_compatibility(
            info,
            base_fingerprint=self._base_fingerprint,
            vocab_fingerprint=self._vocab_fingerprint,
            feature_config=self._feature_dict,
        )
        if info["rejected"] and not self.allow_rejected:
            logger.warning(
                "adapter %r (%s) was rejected at training (%s): serving the base model for this user",
                info["name"],
                path,
                info["rejected_reason"],
            )
            return None
        if info["rejected"]:
            logger.warning("serving adapter %r although it was rejected at training (allow_rejected)", info["name"])
        reference = next(self.model.parameters())
        adapter.to(device=reference.device, dtype=reference.dtype)
        logger.info("loaded %s adapter %r from %s", info["adapter_type"], info["name"], path)
        return adapter.eval().requires_grad_(False)

    def available_users(self) -> List[str]:
        """Names of the adapters in ``adapter_dir`` (empty without one)."""
        return [] if self.cache is None else self.cache.available()

    def cache_stats(self) -> CacheStats:
        """Counters of the adapter cache (all zero without ``adapter_dir``)."""
        return CacheStats() if self.cache is None else self.cache.stats()

    def resolve_users(self, users: Iterable[Optional[str]]) -> Dict[Optional[str], Optional[AdapterModule]]:
        """Check every user name and load its adapter (through the cache) before any audio is processed.

        Args:
            users: names, ``None`` meaning the base model.

        Returns:
            name -> adapter module, ``None`` for the base model (and for users falling back to it, or whose adapter
            was rejected at training).

        Raises:
            ValueError: an invalid name (path separators, ``..``, too long, ...), even with fallback.
            UnknownUserError: a user without an adapter file, unless ``fallback_to_base``.
            AdapterCompatibilityError: an adapter made for another base model, vocabulary or features.
        """
        resolved: Dict[Optional[str], Optional[AdapterModule]] = {None: None}
        names = [user for user in dict.fromkeys(users) if user is not None]
        for name in names:
            validate_adapter_name(name)
        for name in names:
            resolved[name] = self._adapter_for(name)
        return resolved

    def _adapter_for(self, name: str) -> Optional[AdapterModule]:
        if self.cache is None:
            reason = "this recognizer has no adapter_dir"
        else:
            try:
                return self.cache.get(name)
            except FileNotFoundError:
                reason = f"no {name}_adapter.pt in {self.cache.adapter_dir}"
        if not self.fallback_to_base:
            raise UnknownUserError(name, self.available_users(), reason)
        logger.warning("user %r: %s; using the base model", name, reason)
        return None

    # ------------------------------------------------------------------ inputs

    def _prepare(
        self, audio: AudioInput, index: Optional[int], sample_rate: Optional[int], name: Optional[str] = None
    ) -> AudioItem:
        """Validate one input; short files are read now, long files are streamed later (see ``prepare_input``)."""
        return prepare_input(
            audio,
            index,
            sample_rate,
            target_rate=self.feature_config.sample_rate,
            max_in_memory_seconds=self.chunk_seconds,
            name=name,
        )

    def _item_segments(self, item: AudioItem) -> Iterator[Tuple[int, np.ndarray]]:
        return item_segments(
            item, self.feature_config.sample_rate, self.chunk_seconds, self.split_search_seconds, self.voice_activity
        )

    # ------------------------------------------------------------------ transcription

    def transcribe(
        self,
        audio: Union[AudioInput, Sequence[AudioInput]],
        user: Union[None, str, Sequence[Optional[str]]] = None,
        sample_rate: Optional[int] = None,
        return_timestamps: bool = False,
    ) -> Union[Transcription, List[Transcription]]:
        """Transcribe one input or a list of inputs, each with its own user's adapter.

        Args:
            audio: a path, a waveform (numpy array / torch tensor, see :mod:`kospeech.inference.audio_inputs`), a
                ``(waveform, sample_rate)`` pair, or a list of these.
            user: ``None`` (base model for all), one name for all inputs, or a list with one name (or ``None``)
                per input.
            sample_rate: sample rate of waveform inputs given without their own rate (ignored for files, which
                carry theirs).
            return_timestamps: fill :attr:`Transcription.timestamps` and :attr:`Transcription.words`.

        Returns:
            A :class:`Transcription` for a single input, a list of them (in input order) for a list.

        Raises:
            UnknownUserError, ValueError, AdapterCompatibilityError: see :meth:`resolve_users`.
            FileNotFoundError, AudioError, ValueError: unusable audio, naming the input (see
                :mod:`kospeech.inference.audio_inputs`).
        """
        single = not isinstance(audio, list)
        inputs: List[AudioInput] = [audio] if single else list(audio)
        users = self._users_per_input(user, len(inputs), single)
        adapters = self.resolve_users(users)
        items = [self._prepare(item, None if single else index, sample_rate) for index, item in enumerate(inputs)]
        results = self._run(items, (self._segments(item) for item in items), users, adapters, return_timestamps)
        return results[0] if single else results

    def prepare(
        self,
        audio: AudioInput,
        sample_rate: Optional[int] = None,
        run_extractor: bool = False,
        name: Optional[str] = None,
    ) -> PreparedAudio:
        """Check one input, find its speech and compute its features: all of transcription that no user changes.

        Safe to call from several threads at once. ``transcribe_prepared([recognizer.prepare(a) for a in audios],
        users)`` gives what ``transcribe(audios, users)`` gives (with ``run_extractor``, within float rounding).

        Args:
            audio: a path, a waveform, or a ``(waveform, sample_rate)`` pair (as for :meth:`transcribe`).
            sample_rate: the rate of a waveform given without its own.
            run_extractor: also run the model's convolutional extractor on each segment, here, one segment at a
                time. Every adapter comes after the extractor, so its output is the same whoever the user is. Worth
                it where preparing runs beside the thread that batches, on a CPU: there the extractor gains little
                from batching (a convolution over one utterance already fills a core) and is a quarter of the
                batched model's time. On a GPU it batches well: leave it to :meth:`transcribe_prepared`.
            name: how errors and warnings name a waveform input (e.g. the file an upload came from).

        Returns:
            The input's :class:`PreparedAudio`.

        Raises:
            FileNotFoundError, AudioError, ValueError: unusable audio, naming the input.
        """
        item = self._prepare(audio, None, sample_rate, name)
        with torch.inference_mode():
            segments = list(self._segments(item))
            if run_extractor:
                for segment in segments:
                    segment.extracted, segment.features = self._extract(segment.features), None
            return PreparedAudio(item, segments)

    def _extract(self, features: Tensor) -> Tensor:
        """The model's extractor output for one segment: (T, D) features -> (T', F_conv) on the model's device."""
        lengths = torch.tensor([features.shape[0]], dtype=torch.int64)
        extracted, _ = self.model.run(features.unsqueeze(0).to(self.device), lengths, to_layer=0)
        return extracted[0]

    def transcribe_prepared(
        self,
        prepared: Sequence[PreparedAudio],
        user: Union[None, str, Sequence[Optional[str]]] = None,
        return_timestamps: bool = False,
        adapters: Optional[Dict[Optional[str], Optional[AdapterModule]]] = None,
    ) -> List[Transcription]:
        """Transcribe inputs made by :meth:`prepare`, each with its own user's adapter, in mixed-user batches.

        Args:
            prepared: the inputs.
            user: ``None`` (base model for all), one name for all inputs, or a list with one name (or ``None``) per
                input.
            return_timestamps: fill :attr:`Transcription.timestamps` and :attr:`Transcription.words`.
            adapters: the users' adapters as :meth:`resolve_users` gave them, when the caller has resolved them
                already (a server checking each user first); ``None``: resolved here.

        Returns:
            One :class:`Transcription` per input, in input order.

        Raises:
            UnknownUserError, ValueError, AdapterCompatibilityError: see :meth:`resolve_users`.
        """
        users = self._users_per_input(user, len(prepared), single=False)
        if adapters is None:
            adapters = self.resolve_users(users)
        elif not set(users) <= set(adapters):
            raise ValueError(f"adapters lacks users {sorted(set(users) - set(adapters), key=str)}")
        return self._run(
            [audio.item for audio in prepared],
            [audio.segments for audio in prepared],
            users,
            adapters,
            return_timestamps,
        )

    @staticmethod
    def _users_per_input(
        user: Union[None, str, Sequence[Optional[str]]], count: int, single: bool
    ) -> List[Optional[str]]:
        if isinstance(user, (list, tuple)):
            if single:
                raise ValueError("user is a list but audio is a single input; pass a list of inputs or one user")
            if len(user) != count:
                raise ValueError(f"got {len(user)} users for {count} inputs; give one user (or None) per input")
            return list(user)
        if user is None or isinstance(user, str):
            return [user] * count
        raise ValueError(f"user must be None, a name or a list of names, got {type(user).__name__}")

    def _segments(self, item: AudioItem) -> Iterator[_Segment]:
        """The input's speech segments with their features, one at a time (a long file is read as it goes)."""
        target_rate = self.feature_config.sample_rate
        min_samples = self.feature_config.win_length
        for offset, samples in self._item_segments(item):
            if samples.shape[0] < min_samples:
                continue  # a tail shorter than one feature window carries nothing to decode
            features = self.feature_extractor(samples, where=item.description)
            yield _Segment(offset / target_rate, samples.shape[0] / target_rate, features)

    def _run(
        self,
        items: List[AudioItem],
        segments_per_item: Iterable[Iterable[_Segment]],
        users: List[Optional[str]],
        adapters: Dict[Optional[str], Optional[AdapterModule]],
        return_timestamps: bool,
    ) -> List[Transcription]:
        names = [None if adapters[name] is None else name for name in users]
        accumulators = [_Accumulator() for _ in items]
        target_rate = self.feature_config.sample_rate
        min_samples = self.feature_config.win_length
        pending: List[Tuple[int, _Segment]] = []
        with torch.inference_mode():
            for index, segments in enumerate(segments_per_item):
                for segment in segments:
                    pending.append((index, segment))
                    if len(pending) == self.batch_size:
                        self._decode_batch(pending, names, adapters, accumulators)
                        pending = []
            if pending:
                self._decode_batch(pending, names, adapters, accumulators)
        results = []
        for item, name, requested, accumulator in zip(items, names, users, accumulators):
            seconds = item.seconds
            if accumulator.num_segments == 0 and item.num_samples * target_rate < min_samples * item.sample_rate:
                logger.warning(
                    "%s: %.4f s of audio is shorter than one feature window (%d samples at %d Hz); empty transcript",
                    item.description,
                    seconds,
                    min_samples,
                    target_rate,
                )
            elif accumulator.num_segments == 0:
                logger.warning("%s: no speech found in %.2f s of audio; empty transcript", item.description, seconds)
            frames = accumulator.num_frames
            raw = utterance_confidence(accumulator.probabilities) if frames else 0.0
            results.append(
                Transcription(
                    text=" ".join(accumulator.texts),
                    tokens=accumulator.tokens,
                    score=accumulator.score,
                    confidence=self.calibration.utterance(raw),
                    num_frames=frames,
                    duration=seconds,
                    num_segments=accumulator.num_segments,
                    adapter=name,
                    user=requested,
                    segments=accumulator.segments,
                    timestamps=accumulator.timestamps if return_timestamps else None,
                    words=accumulator.words if return_timestamps else None,
                )
            )
        return results

    def _decode_batch(
        self,
        pending: List[Tuple[int, _Segment]],
        names: List[Optional[str]],
        adapters: Dict[Optional[str], Optional[AdapterModule]],
        accumulators: List[_Accumulator],
    ) -> None:
        """Pad the segments, run one mixed-adapter forward pass, decode, and add each row to its input's result.

        ``pending`` holds (input index, segment) pairs.
        """
        segments = [segment for _, segment in pending]
        if any(segment.extracted is not None for segment in segments):  # prepared with the extractor: start after it
            rows = [self._extract(s.features) if s.extracted is None else s.extracted for s in segments]
            from_layer: Optional[int] = 0
        else:
            rows, from_layer = [segment.features for segment in segments], None
        lengths = torch.tensor([row.shape[0] for row in rows], dtype=torch.int64)
        inputs = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True).to(self.device)  # (B, T, D) or (B, T', F)
        router = AdapterRouter.from_names([names[index] for index, _ in pending], adapters)
        log_probs, output_lengths = self.model.forward_mixed(inputs, lengths, router, from_layer=from_layer)
        log_probs, lengths = log_probs.cpu(), output_lengths.cpu()
        hypotheses = self.decoder(log_probs, lengths)
        for row, ((index, segment), hypothesis) in enumerate(zip(pending, hypotheses)):
            frames = int(lengths[row])
            spans = token_spans(log_probs[row], hypothesis.tokens, hypothesis.timesteps, frames)
            blank = log_probs[row, :frames, self.vocab.blank_id].float()  # (T'_row,) log-posteriors of the blank
            self._add(accumulators[index], segment, hypothesis, spans, blank)

    def _add(
        self,
        accumulator: _Accumulator,
        segment: _Segment,
        hypothesis: CTCHypothesis,
        spans: List[TokenSpan],
        blank: Tensor,
    ) -> None:
        """Add one decoded segment to its input's result: text, tokens, timings, words and probabilities.

        ``blank`` holds the segment's (T',) log-posteriors of the blank label, one per valid output frame.
        """
        kept = [(token, span) for token, span in zip(hypothesis.tokens, spans) if token not in self._special_ids]
        # the tokens spell the text: words that spell something, one space between two, none at a segment's ends
        kept = [
            kept[position] for position in spelling_tokens([token for token, _ in kept], self.vocab, self._space_id)
        ]
        if kept and accumulator.tokens and self._space_id is not None:
            accumulator.tokens.append(self._space_id)
        text = self.vocab.decode(token for token, _ in kept)
        if text:
            accumulator.texts.append(text)
        offset = segment.offset_seconds
        spoken = [math.log(max(span.probability, 1e-30)) for token, span in kept if token != self._space_id]
        accumulator.segments.append(
            TranscriptSegment(
                _seconds(offset),
                _seconds(offset + segment.duration_seconds),
                text,
                tokens=[token for token, _ in kept],
                avg_logprob=round(sum(spoken) / len(spoken) if spoken else float(blank.mean()), 4),
                no_speech_prob=round(float(blank.min().exp()), 4),
            )
        )
        accumulator.tokens.extend(token for token, _ in kept)
        accumulator.timestamps.extend(
            TokenTimestamp(
                token,
                self.vocab.tokens[token],
                _seconds(offset + span.start * self.frame_seconds),
                _seconds(offset + span.end * self.frame_seconds),
                round(span.probability, 4),
            )
            for token, span in kept
        )
        accumulator.probabilities.extend(span.probability for token, span in kept if token != self._space_id)
        accumulator.words.extend(self._words(kept, offset))
        accumulator.score += float(hypothesis.score)
        accumulator.num_frames += blank.numel()
        accumulator.num_segments += 1

    def _words(self, kept: List[Tuple[int, TokenSpan]], offset: float) -> List[WordTiming]:
        """The words of one segment's tokens (runs between space tokens), with times and calibrated confidences."""
        runs: List[List[Tuple[int, TokenSpan]]] = [[]]
        for token, span in kept:
            if token == self._space_id:
                runs.append([])
            else:
                runs[-1].append((token, span))
        words = []
        for run in runs:
            text = self.vocab.decode([token for token, _ in run]).strip()
            if text:
                confidence = self.calibration.word(word_confidence([span.probability for _, span in run]))
                start, end = run[0][1].start * self.frame_seconds, run[-1][1].end * self.frame_seconds
                words.append(WordTiming(text, _seconds(offset + start), _seconds(offset + end), round(confidence, 4)))
        return words
