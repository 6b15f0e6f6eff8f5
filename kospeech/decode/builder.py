"""The one place that picks a CTC decoder from settings."""

from __future__ import annotations

from typing import Union

from kospeech.decode.beam import BeamSearchCTCDecoder, check_beam_size
from kospeech.decode.ctc import CTCVocabulary
from kospeech.decode.greedy import GreedyCTCDecoder

__all__ = ["build_decoder"]


def build_decoder(vocab: CTCVocabulary, beam_size: int = 1) -> Union[GreedyCTCDecoder, BeamSearchCTCDecoder]:
    """Greedy CTC decoding for ``beam_size == 1``, prefix beam search otherwise.

    Raises:
        ValueError: ``beam_size`` is not an int in ``[1, MAX_BEAM_SIZE]``.
    """
    check_beam_size(beam_size)
    return GreedyCTCDecoder(vocab) if beam_size == 1 else BeamSearchCTCDecoder(vocab, beam_size=beam_size)
