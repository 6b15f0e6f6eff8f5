"""The one place that picks a CTC decoder from settings."""

from __future__ import annotations

from typing import Union

from kospeech.decode.beam import BeamSearchCTCDecoder
from kospeech.decode.ctc import CTCVocabulary
from kospeech.decode.greedy import GreedyCTCDecoder

__all__ = ["build_decoder"]


def build_decoder(vocab: CTCVocabulary, beam_size: int = 1) -> Union[GreedyCTCDecoder, BeamSearchCTCDecoder]:
    """Greedy CTC decoding for ``beam_size == 1``, prefix beam search otherwise.

    Raises:
        ValueError: ``beam_size`` is not an int >= 1.
    """
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam_size must be an integer >= 1, got {beam_size!r}")
    return GreedyCTCDecoder(vocab) if beam_size == 1 else BeamSearchCTCDecoder(vocab, beam_size=beam_size)
