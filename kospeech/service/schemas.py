"""Pydantic request and response bodies of the API (SPEC section 7), apart from the database models."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "API_ERRORS",
    "AdapterInfo",
    "AdapterRequest",
    "ErrorBody",
    "ErrorDetail",
    "Health",
    "JobCreated",
    "JobResult",
    "JobStatus",
    "Prompts",
    "TranscriptionAdapter",
    "TranscriptionJson",
    "TranscriptionSegment",
    "TranscriptionVerbose",
    "TranscriptionWord",
    "UserCreate",
    "UserRecord",
    "UtteranceCreated",
    "UtteranceList",
    "UtteranceRecord",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    """What went wrong."""

    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error answer."""

    error: ErrorDetail


API_ERRORS: Dict[Union[int, str], Dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "no API key, or one that is malformed, unknown or revoked"},
    422: {"model": ErrorBody, "description": "a field of the request is invalid (the message names it)"},
    503: {"model": ErrorBody, "description": "the server cannot answer now (Retry-After says when to try again)"},
}
"""The answers every ``/v1`` endpoint may give besides its own (the request guard's and the validation's)."""


class Health(BaseModel):
    """``GET /healthz``."""

    status: Literal["ok"] = "ok"


class UserCreate(_Strict):
    """``POST /v1/users``: a user id by the adapter-name rule (1 to 64 of ``[A-Za-z0-9_.-]``, no leading ``.``,
    no ``..``)."""

    user_id: str = Field(examples=["alice"], description="checked by the rule above: 422 invalid_user_id")


class AdapterInfo(BaseModel):
    """A user's adapter: the active version, else the newest trained (rejected) one."""

    version: int
    adapter_type: str
    cer_before: Optional[float]
    cer_after: Optional[float]
    active: bool
    created_at: datetime


class JobResult(BaseModel):
    """What a finished training job produced."""

    cer_before: Optional[float]
    cer_after: Optional[float]
    activated: bool
    version: int


class JobStatus(BaseModel):
    """``GET /v1/jobs/{job_id}``."""

    job_id: str
    user_id: str
    status: Literal["queued", "running", "succeeded", "failed"]
    progress: float = Field(ge=0.0, le=1.0)
    result: Optional[JobResult]
    error: Optional[str]


class UserRecord(BaseModel):
    """``GET /v1/users/{user_id}``."""

    user_id: str
    utterances: int
    audio_seconds: float
    adapter: Optional[AdapterInfo]
    jobs: List[JobStatus]


class Prompts(BaseModel):
    """``GET /v1/prompts``: sentences to read for enrollment."""

    prompts: List[str]


class UtteranceCreated(BaseModel):
    """``POST /v1/users/{user_id}/utterances``."""

    utterance_id: str
    duration: float


class UtteranceRecord(BaseModel):
    """One enrollment utterance."""

    utterance_id: str
    text: str
    duration: float


class UtteranceList(BaseModel):
    """``GET /v1/users/{user_id}/utterances``."""

    utterances: List[UtteranceRecord]


class AdapterRequest(_Strict):
    """``POST /v1/users/{user_id}/adapter`` (optional body)."""

    adapter_type: Optional[str] = Field(default=None, examples=["encoder"])


class JobCreated(BaseModel):
    """The answer 202 to a training request."""

    job_id: str


class TranscriptionJson(BaseModel):
    """``response_format=json``."""

    text: str


class TranscriptionSegment(BaseModel):
    """One decoded stretch of speech, with the fields of OpenAI's segment (a CTC model's counterparts)."""

    id: int
    seek: int = Field(description="the segment's start in 10 ms frames")
    start: float
    end: float
    text: str
    tokens: List[int] = Field(description="the base vocabulary's label ids of the text")
    temperature: float = Field(description="0.0: greedy or beam search, no sampling")
    avg_logprob: float = Field(
        description="mean natural-log posterior of the text's tokens (of the blank over the segment when it has none)"
    )
    compression_ratio: float = Field(description="the text's UTF-8 bytes over their zlib-compressed size")
    no_speech_prob: float = Field(
        description="the blank posterior at the segment's most speech-like frame: near 1 in silence"
    )


class TranscriptionWord(BaseModel):
    """One word with its times."""

    start: float
    end: float
    word: str


class TranscriptionAdapter(BaseModel):
    """The adapter that served a request."""

    user: str
    version: int


class TranscriptionVerbose(BaseModel):
    """``response_format=verbose_json`` (OpenAI's shape plus ``confidence`` and ``adapter``)."""

    task: Literal["transcribe"] = "transcribe"
    language: str = "korean"
    duration: float
    text: str
    segments: List[TranscriptionSegment]
    words: List[TranscriptionWord]
    confidence: float
    adapter: Optional[TranscriptionAdapter]
