"""``POST /v1/audio/transcriptions``: OpenAI-compatible transcription, with the user's adapter when they have one."""

from __future__ import annotations

import asyncio
import enum
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from kospeech.errors import AdapterCompatibilityError, AudioError, CheckpointError, UnknownUserError
from kospeech.inference import Transcription, to_srt, to_vtt
from kospeech.service.adapter_cache import serving_name
from kospeech.service.audio import SAMPLE_RATE, decode_audio, spooled_upload
from kospeech.service.batching import BatcherStopped
from kospeech.service.deps import CallerDep, SessionDep, StateDep, caller_user, single_form_fields
from kospeech.service.errors import ServiceError
from kospeech.service.repeated_errors import RepeatedErrors, by_message
from kospeech.service.schemas import (
    API_ERRORS,
    ErrorBody,
    TranscriptionAdapter,
    TranscriptionJson,
    TranscriptionSegment,
    TranscriptionVerbose,
    TranscriptionWord,
)
from kospeech.service.versions import active_version

__all__ = ["ResponseFormat", "router", "verbose"]

logger = logging.getLogger(__name__)

UNUSABLE_ADAPTER_LOG_SECONDS = 60.0
"""A user whose active adapter cannot be used fails each request: its error is logged once per this many seconds."""
logger.addFilter(RepeatedErrors(UNUSABLE_ADAPTER_LOG_SECONDS, by_message))

router = APIRouter(prefix="/v1", tags=["transcription"], responses=API_ERRORS)


class ResponseFormat(str, enum.Enum):
    """OpenAI's ``response_format`` values."""

    json = "json"
    text = "text"
    verbose_json = "verbose_json"
    srt = "srt"
    vtt = "vtt"


def _compression_ratio(text: str) -> float:
    """Whisper's repetition measure: the text's UTF-8 size over its zlib-compressed size (0 for no text)."""
    data = text.encode("utf-8")
    return round(len(data) / len(zlib.compress(data)), 4) if data else 0.0


def verbose(result: Transcription, adapter: Optional[TranscriptionAdapter]) -> TranscriptionVerbose:
    """The ``verbose_json`` body of a transcription."""
    return TranscriptionVerbose(
        duration=round(result.duration, 4),
        text=result.text,
        segments=[
            TranscriptionSegment(
                id=index,
                seek=round(segment.start * 100),
                start=segment.start,
                end=segment.end,
                text=segment.text,
                tokens=segment.tokens,
                temperature=0.0,
                avg_logprob=segment.avg_logprob,
                compression_ratio=_compression_ratio(segment.text),
                no_speech_prob=segment.no_speech_prob,
            )
            for index, segment in enumerate(result.segments)
        ],
        words=[TranscriptionWord(start=word.start, end=word.end, word=word.word) for word in result.words or []],
        confidence=round(result.confidence, 4),
        adapter=adapter,
    )


@dataclass(frozen=True)
class _Serving:
    """What serves a request: the base model (all ``None``) or one version of a user's adapter."""

    name: Optional[str] = None
    version: Optional[int] = None
    file: Optional[Path] = None


def _serving(session: SessionDep, caller: CallerDep, state: StateDep, user_id: Optional[str]) -> _Serving:
    """The active adapter version of the caller's user ``user_id`` (the database says which), or the base model.

    The session is closed before returning: a request waiting for its batch holds no database connection.
    """
    if not user_id:
        return _Serving()
    try:
        user = caller_user(session, caller, user_id)
        version = active_version(session, user.id)
        if version is None:
            return _Serving()
        return _Serving(serving_name(user.id, version.version), version.version, state.storage.absolute(version.file))
    finally:
        session.close()


def _check_user_remains(state: StateDep, caller: CallerDep, user_id: str) -> None:
    """Raises 404 when the caller's user ``user_id`` is gone (deleted while its request waited for the model)."""
    with state.sessions() as session:
        caller_user(session, caller, user_id)


@router.post(
    "/audio/transcriptions",
    response_model=TranscriptionVerbose | TranscriptionJson,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}, "text/vtt": {"schema": {"type": "string"}}}},
        400: {"model": ErrorBody},
        404: {"model": ErrorBody},
        413: {"model": ErrorBody},
    },
    dependencies=[Depends(single_form_fields("file", "user", "response_format"))],
)
async def transcribe(
    session: SessionDep,
    caller: CallerDep,
    state: StateDep,
    file: Annotated[
        UploadFile, File(description="wav, flac, ogg/opus, webm, mp3 or m4a", json_schema_extra={"format": "binary"})
    ],
    user: Annotated[Optional[str], Form(description="the user whose adapter to use (default: the base model)")] = None,
    response_format: Annotated[ResponseFormat, Form()] = ResponseFormat.json,
    model: Annotated[Optional[str], Form(description="accepted for OpenAI compatibility, ignored")] = None,
    language: Annotated[Optional[str], Form(description="accepted for OpenAI compatibility, ignored")] = None,
    stream: Annotated[bool, Form(description="OpenAI's streamed answer: not offered, false only")] = False,
) -> Response:
    """Transcribe one recording. Requests arriving together are run as one batch across users."""
    if stream:  # a client asking for events would otherwise read the JSON answer as a stream of none
        raise ServiceError(400, "stream_unsupported", "stream: streamed answers are not offered; leave it out or false")
    settings = state.settings
    name = file.filename or "upload"
    if state.batcher.depth() >= settings.max_queued_requests:  # overloaded: a fast answer beats a growing queue
        raise ServiceError(
            503,
            "busy",
            f"{state.batcher.depth()} transcriptions are waiting for the model (server.max_queued_requests); "
            "try again shortly",
            headers={"Retry-After": "1"},
        )

    def decode():
        with spooled_upload(file.file, name, state.storage.uploads_dir, settings.max_upload_bytes) as path:
            return decode_audio(path, name, settings.max_audio_seconds)

    # a batch being formed waits for this request (up to server.batch_max_wait_ms)
    with state.uploads.admitted(), state.batcher.arriving():
        serving = await run_in_threadpool(_serving, session, caller, state, user)
        # decoding and preparing (features, on a CPU the extractor) in the upload pool: the rest waits for the model
        waveform = await state.uploads.run(decode)
        try:
            future = await state.uploads.run(
                state.batcher.submit, waveform, SAMPLE_RATE, serving.name, serving.file, name
            )
        except BatcherStopped as exc:
            raise ServiceError(503, "unavailable", str(exc)) from exc
        except AudioError as exc:  # decodable audio whose features are unusable (e.g. samples far beyond full scale)
            raise ServiceError(422, "invalid_audio", str(exc)) from exc
    try:
        result: Transcription = await asyncio.wrap_future(future)
    except (UnknownUserError, CheckpointError, AdapterCompatibilityError) as exc:
        if isinstance(exc, UnknownUserError):  # the file is gone: with its user (the client's own deletion), 404
            await run_in_threadpool(_check_user_remains, state, caller, user)
        # the active version's file is gone or unusable: fail loudly, never serve the base (the path stays in the log)
        logger.error("user %r: adapter version %s cannot be used from %s: %s", user, serving.version, serving.file, exc)
        if isinstance(exc, UnknownUserError):
            reason = "cannot be read on this server; try again (every server must share server.data_dir)"
        else:
            reason = "cannot be loaded (its file is damaged or does not fit the base model); train a new version"
        raise ServiceError(
            503, "adapter_unavailable", f"the active adapter of user {user!r} (version {serving.version}) {reason}"
        ) from exc
    state.metrics.audio_seconds.inc(result.duration)
    served = None if result.adapter is None else TranscriptionAdapter(user=user, version=serving.version)
    if response_format is ResponseFormat.text:
        return PlainTextResponse(result.text)
    if response_format is ResponseFormat.srt:
        return PlainTextResponse(to_srt(result))
    if response_format is ResponseFormat.vtt:
        return Response(to_vtt(result), media_type="text/vtt; charset=utf-8")
    if response_format is ResponseFormat.verbose_json:
        return JSONResponse(verbose(result, served).model_dump())
    return JSONResponse(TranscriptionJson(text=result.text).model_dump())
