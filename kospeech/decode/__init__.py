"""CTC decoding: greedy (best path) and prefix beam search, both returning ``CTCHypothesis`` records."""

from kospeech.decode.beam import BeamSearchCTCDecoder
from kospeech.decode.builder import build_decoder
from kospeech.decode.ctc import CTCHypothesis, CTCVocabulary, TokenSpan, check_ctc_inputs, token_spans
from kospeech.decode.greedy import GreedyCTCDecoder, greedy_ctc_ids

__all__ = [
    "BeamSearchCTCDecoder",
    "CTCHypothesis",
    "CTCVocabulary",
    "GreedyCTCDecoder",
    "TokenSpan",
    "build_decoder",
    "check_ctc_inputs",
    "greedy_ctc_ids",
    "token_spans",
]
