"""CTC decoding: greedy (best path) and prefix beam search, both returning ``CTCHypothesis`` records."""

from kospeech.decode.beam import MAX_BEAM_SIZE, BeamSearchCTCDecoder, check_beam_size
from kospeech.decode.builder import build_decoder
from kospeech.decode.ctc import (
    CTCHypothesis,
    CTCVocabulary,
    TokenSpan,
    check_ctc_inputs,
    spelling_tokens,
    token_spans,
)
from kospeech.decode.greedy import GreedyCTCDecoder, greedy_ctc_ids

__all__ = [
    "BeamSearchCTCDecoder",
    "MAX_BEAM_SIZE",
    "CTCHypothesis",
    "CTCVocabulary",
    "GreedyCTCDecoder",
    "TokenSpan",
    "build_decoder",
    "check_beam_size",
    "check_ctc_inputs",
    "greedy_ctc_ids",
    "spelling_tokens",
    "token_spans",
]
