"""``POST /v1/audio/transcriptions``: OpenAI-compatible transcription, with the user's adapter when they have one."""

from __future__ import annotations

import asyncio
import enum
from typing import Annotated, Optional

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import select

from kospeech.inference import Transcription, to_srt, to_vtt
from kospeech.service.audio import SAMPLE_RATE, decode_audio, spooled_upload
from kospeech.service.batching import BatcherStopped
from kospeech.service.deps import CallerDep, SessionDep, StateDep, checked_user_id
from kospeech.service.errors import ServiceError
from kospeech.service.models import AdapterVersion, User
from kospeech.service.schemas import (
    ErrorBody,
    TranscriptionAdapter,
    TranscriptionJson,
    TranscriptionSegment,
    TranscriptionVerbose,
    TranscriptionWord,
)

__all__ = ["ResponseFormat", "router", "verbose"]

router = APIRouter(prefix="/v1", tags=["transcription"])


class ResponseFormat(str, enum.Enum):
    """OpenAI's ``response_format`` values."""

    json = "json"
    text = "text"
    verbose_json = "verbose_json"
    srt = "srt"
    vtt = "vtt"


def verbose(result: Transcription, adapter: Optional[TranscriptionAdapter]) -> TranscriptionVerbose:
    """The ``verbose_json`` body of a transcription."""
    return TranscriptionVerbose(
        duration=round(result.duration, 4),
        text=result.text,
        segments=[
            TranscriptionSegment(id=index, start=segment.start, end=segment.end, text=segment.text)
            for index, segment in enumerate(result.segments)
        ],
        words=[TranscriptionWord(start=word.start, end=word.end, word=word.word) for word in result.words or []],
        confidence=round(result.confidence, 4),
        adapter=adapter,
    )


def _serving(session: SessionDep, caller: CallerDep, state: StateDep, user_id: Optional[str]):
    """(serving name, version) of the user's active adapter, (None, None) for the base model."""
    if not user_id:
        return None, None
    checked_user_id(user_id)
    user = session.scalar(select(User).where(User.tenant_id == caller.tenant_id, User.user_id == user_id))
    if user is None:
        raise ServiceError(404, "user_not_found", f"no user {user_id!r}")
    version = session.scalar(
        select(AdapterVersion.version).where(AdapterVersion.user_pk == user.id, AdapterVersion.active.is_(True))
    )
    if version is None:
        return None, None
    state.cache.bind(user.id, state.storage.active_adapter(caller.tenant, user.user_id))
    return user.id, version


@router.post(
    "/audio/transcriptions",
    response_model=TranscriptionVerbose | TranscriptionJson,
    responses={
        200: {"content": {"text/plain": {}, "text/vtt": {}}},
        401: {"model": ErrorBody},
        404: {"model": ErrorBody},
        413: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
async def transcribe(
    session: SessionDep,
    caller: CallerDep,
    state: StateDep,
    file: Annotated[UploadFile, File(description="wav, flac, ogg/opus, webm, mp3 or m4a")],
    user: Annotated[Optional[str], Form(description="the user whose adapter to use (default: the base model)")] = None,
    response_format: Annotated[ResponseFormat, Form()] = ResponseFormat.json,
    model: Annotated[Optional[str], Form(description="accepted for OpenAI compatibility, ignored")] = None,
    language: Annotated[Optional[str], Form(description="accepted for OpenAI compatibility, ignored")] = None,
) -> Response:
    """Transcribe one recording. Requests arriving together are run as one batch across users."""
    serving_name, version = await run_in_threadpool(_serving, session, caller, state, user)
    settings = state.settings
    name = file.filename or "upload"

    def decode():
        with spooled_upload(file.file, name, state.storage.uploads_dir, settings.max_upload_bytes) as path:
            return decode_audio(path, name, settings.max_audio_seconds)

    waveform = await run_in_threadpool(decode)
    try:
        future = state.batcher.submit(waveform, SAMPLE_RATE, serving_name)
    except BatcherStopped as exc:
        raise ServiceError(503, "unavailable", str(exc)) from exc
    result: Transcription = await asyncio.wrap_future(future)
    state.metrics.audio_seconds.inc(result.duration)
    served = None if result.adapter is None else TranscriptionAdapter(user=user, version=version)
    if response_format is ResponseFormat.text:
        return PlainTextResponse(result.text)
    if response_format is ResponseFormat.srt:
        return PlainTextResponse(to_srt(result))
    if response_format is ResponseFormat.vtt:
        return Response(to_vtt(result), media_type="text/vtt; charset=utf-8")
    if response_format is ResponseFormat.verbose_json:
        return JSONResponse(verbose(result, served).model_dump())
    return JSONResponse(TranscriptionJson(text=result.text).model_dump())
