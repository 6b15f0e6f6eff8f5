"""Result records of the inference package: what a transcription, a token timestamp and the adapter cache report.

Plain dataclasses with no behaviour beyond turning themselves into JSON-ready values: :class:`Transcription`
(one per input given to :meth:`Recognizer.transcribe <kospeech.inference.recognizer.Recognizer.transcribe>`),
:class:`TokenTimestamp` (its per-token start times, when requested) and :class:`CacheStats` (the counters of an
:class:`~kospeech.inference.adapter_cache.AdapterCache`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional

__all__ = ["CacheStats", "TokenTimestamp", "Transcription"]


@dataclass
class TokenTimestamp:
    """Where one output token starts.

    Attributes:
        token_id: vocabulary id.
        token: the token's text (a syllable, a jamo or a space).
        start: seconds from the start of the input to the first output frame of the token. One output frame
            covers ``2 * frame_shift_ms`` of audio (the conv stride is 2), so starts are accurate to about that.
    """

    token_id: int
    token: str
    start: float


@dataclass
class Transcription:
    """The recognizer's result for one input.

    Attributes:
        text: the transcript (segment texts of long inputs joined with a space).
        tokens: label ids of the transcript, in order (special ids removed).
        score: natural-log probability of the decoded labelling, summed over segments: of the best path for
            greedy decoding, of the prefix for beam search.
        confidence: ``exp(score / num_frames)``, the per-frame geometric mean probability, in [0, 1];
            0.0 when no frame was decoded.
        num_frames: output frames decoded (T' summed over segments).
        duration: seconds of input audio.
        num_segments: segments the input was cut into (0 when it was shorter than one feature window).
        user: the user requested for this input (``None``: base model).
        adapter: the adapter actually applied; ``None`` for the base model, including a fallback for a user
            without an adapter.
        timestamps: per-token start times when requested, else ``None``.
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
    timestamps: Optional[List[TokenTimestamp]] = None

    def to_dict(self) -> Dict[str, Any]:
        """Plain values for JSON (``timestamps`` omitted when not requested)."""
        values = asdict(self)
        if self.timestamps is None:
            values.pop("timestamps")
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
        capacity: the most adapters held at once.
    """

    hits: int = 0
    misses: int = 0
    evictions: int = 0
    reloads: int = 0
    size: int = 0
    capacity: int = 0
