"""Result records of the inference package: what a transcription, its timings and the adapter cache report.

Plain dataclasses with no behaviour beyond turning themselves into JSON-ready values: :class:`Transcription`
(one per input given to :meth:`Recognizer.transcribe <kospeech.inference.recognizer.Recognizer.transcribe>`),
:class:`TranscriptSegment` (each decoded speech region), :class:`WordTiming` and :class:`TokenTimestamp` (per
word and per token, when requested) and :class:`CacheStats` (the counters of an
:class:`~kospeech.inference.adapter_cache.AdapterCache`).

Times are seconds from the start of the input. One output frame covers ``2 * frame_shift_ms`` of audio (the conv
stride is 2), so token and word times are accurate to about 20 ms.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

__all__ = ["CacheStats", "TokenTimestamp", "TranscriptSegment", "Transcription", "WordTiming"]


@dataclass
class TokenTimestamp:
    """Where one output token lies.

    Attributes:
        token_id: vocabulary id.
        token: the token's text (a syllable, a jamo or a space).
        start: start of the token's first output frame.
        end: end of its last output frame (the frames where it stays the most likely label), > ``start``.
        probability: the model's mean posterior of the token over those frames, in [0, 1].
    """

    token_id: int
    token: str
    start: float
    end: float
    probability: float


@dataclass
class WordTiming:
    """One word of the transcript (a run of tokens between spaces).

    Attributes:
        word: its text, as in :attr:`Transcription.text`.
        start: start of its first token.
        end: end of its last token, > ``start``.
        confidence: calibrated probability that the word is right (see :mod:`kospeech.inference.confidence`).
    """

    word: str
    start: float
    end: float
    confidence: float


@dataclass
class TranscriptSegment:
    """One decoded stretch of the input: a speech region, or a piece of a long one.

    Attributes:
        start: where the segment's audio starts.
        end: where it ends.
        text: its transcript (may be empty).
        tokens: label ids of its transcript (special ids removed).
        avg_logprob: mean natural-log posterior of its tokens other than spaces (each over its frames); of the blank
            over the segment's frames when it decoded no token.
        no_speech_prob: the blank posterior at the segment's most speech-like output frame: near 0 where a token was
            emitted with confidence, near 1 in silence (CTC's counterpart of Whisper's field of that name).
    """

    start: float
    end: float
    text: str
    tokens: List[int] = field(default_factory=list)
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0


@dataclass
class Transcription:
    """The recognizer's result for one input.

    Attributes:
        text: the transcript (segment texts of long inputs joined with a space).
        tokens: label ids of the transcript, in order (special ids removed): they spell ``text``, the space that joins
            two segments included.
        score: natural-log probability of the decoded labelling, summed over segments: of the best path for
            greedy decoding, of the prefix for beam search.
        confidence: calibrated probability that the transcript's CER is at most 10 %, in [0, 1] (see
            :mod:`kospeech.inference.confidence`); 0.0 when no frame was decoded.
        num_frames: output frames decoded (T' summed over segments).
        duration: seconds of input audio.
        num_segments: segments decoded (0 when the input holds no speech or is shorter than one feature window).
        user: the user requested for this input (``None``: base model).
        adapter: the adapter actually applied; ``None`` for the base model, including a fallback for a user
            without an adapter.
        segments: the decoded segments, in order.
        timestamps: per-token timings when requested, else ``None``: every decoded token of ``tokens``, not the
            spaces that join segments (no frame decoded them).
        words: per-word timings and confidences when requested, else ``None``.
    """

    text: str
    tokens: List[int]
    score: float
    confidence: float
    num_frames: int
    duration: float
    num_segments: int
    user: Optional[str] = None
    adapter: Optional[str] = None
    segments: List[TranscriptSegment] = field(default_factory=list)
    timestamps: Optional[List[TokenTimestamp]] = None
    words: Optional[List[WordTiming]] = None

    def to_dict(self) -> Dict[str, Any]:
        """Plain values for JSON (``timestamps`` and ``words`` omitted when not requested)."""
        values = asdict(self)
        for optional in ("timestamps", "words"):
            if values[optional] is None:
                values.pop(optional)
        return values


@dataclass
class CacheStats:
    """Counters of an :class:`~kospeech.inference.adapter_cache.AdapterCache`.

    Attributes:
        hits: lookups served from memory.
        misses: lookups that loaded the file (first use, after an eviction, or after the file changed).
        evictions: adapters dropped because the cache was full (least recently used first).
        reloads: misses caused by a cached adapter's file having changed on disk (counted in ``misses`` too).
        size: adapters held now.
        capacity: the cache's bound: the most adapters held at once (the service's cache: the most bytes of adapter
            tensors).
        rejected: lookups answered with the base model because the user's adapter was rejected at training (no
            better than the base on the user's held-out utterances).
        failures: lookups that failed because the adapter's file could not be used (damaged, or made for another
            base), also those answered from the memory of an earlier failure without reading the file again.
    """

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    reloads: int = 0
    size: int = 0
    capacity: int = 0
    rejected: int = 0
    failures: int = 0
