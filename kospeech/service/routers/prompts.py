"""``GET /v1/prompts``: sentences to read aloud for enrollment, from the built-in synthetic grammar."""

from __future__ import annotations

import random
from typing import Annotated

from fastapi import APIRouter, Query

from kospeech.data.synthetic import SentenceGenerator
from kospeech.errors import UnknownCharacterError
from kospeech.service.deps import CallerDep, StateDep
from kospeech.service.schemas import API_ERRORS, Prompts

__all__ = ["MAX_PROMPTS", "router"]

router = APIRouter(prefix="/v1", tags=["enrollment"], responses=API_ERRORS)

MAX_PROMPTS = 100
_generator = SentenceGenerator()


@router.get("/prompts", response_model=Prompts)
def prompts(state: StateDep, _caller: CallerDep, n: Annotated[int, Query(ge=1, le=MAX_PROMPTS)] = 20) -> Prompts:
    """``n`` different sentences (numbers, dates, places, commands, ...) written as they are spoken, every one within
    the base model's vocabulary."""
    rng = random.Random()
    chosen: dict = {}
    while len(chosen) < n:
        text = _generator.sample(rng).text
        try:
            state.vocab.encode(text)
        except UnknownCharacterError:
            continue
        chosen[text] = None
    return Prompts(prompts=list(chosen))
