"""Enrollment utterances: upload (audio + the text read), list, delete."""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Annotated, List, Tuple

import numpy as np
import torch
from fastapi import APIRouter, Depends, File, Form, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from kospeech.data.audio import save_audio
from kospeech.errors import AudioError, UnknownCharacterError
from kospeech.service.audio import SAMPLE_RATE, decode_audio, spooled_upload
from kospeech.service.deps import SessionDep, StateDep, UserDep, single_form_fields
from kospeech.service.errors import ServiceError
from kospeech.service.models import Utterance, is_id, new_id
from kospeech.service.schemas import API_ERRORS, ErrorBody, UtteranceCreated, UtteranceList, UtteranceRecord
from kospeech.trainer.criterion import min_output_frames

__all__ = ["MAX_TEXT_CHARACTERS", "router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["enrollment"], responses=API_ERRORS)

MAX_TEXT_CHARACTERS = 500
_NOT_FOUND = {404: {"model": ErrorBody}}


def _checked_text(text: str, state: StateDep) -> Tuple[str, List[int]]:
    """The transcript (NFC, whitespace collapsed) and its label ids, if the base model's vocabulary can write it."""
    cleaned = unicodedata.normalize("NFC", re.sub(r"\s+", " ", text)).strip()
    if not cleaned:
        raise ServiceError(422, "invalid_text", "text is empty")
    if len(cleaned) > MAX_TEXT_CHARACTERS:
        raise ServiceError(422, "invalid_text", f"text is longer than {MAX_TEXT_CHARACTERS} characters")
    try:
        labels = state.vocab.encode(cleaned)
    except UnknownCharacterError as exc:
        raise ServiceError(422, "text_outside_vocabulary", f"text outside the model's vocabulary: {exc}") from exc
    return cleaned, labels


def _check_recording(waveform: np.ndarray, name: str, labels: List[int], state: StateDep) -> None:
    """Refuse a recording that training could not use: one without speech, or too short for the text read (CTC needs
    an output frame per label, and one more between two equal labels)."""
    recognizer = state.recognizer
    seconds = waveform.shape[0] / SAMPLE_RATE
    try:
        with state.batcher.preparing():  # bounded with the transcriptions' preparing, beside the model thread
            prepared = recognizer.prepare((waveform, SAMPLE_RATE), name=name)  # speech detection and features
    except AudioError as exc:
        raise ServiceError(422, "invalid_audio", str(exc)) from exc
    if not prepared.segments:
        raise ServiceError(422, "no_speech", f"{name}: no speech found in {seconds:.2f} s of audio; record it again")
    frames = recognizer.feature_extractor.num_frames(waveform.shape[0])
    available = int(recognizer.model.output_lengths(torch.tensor([frames]))[0])
    needed = int(min_output_frames(torch.tensor([labels]), torch.tensor([len(labels)]))[0])
    if available < needed:
        raise ServiceError(
            422,
            "audio_too_short",
            f"{name}: {seconds:.2f} s of audio is too short for its text, which needs at least "
            f"{needed * recognizer.frame_seconds:.2f} s ({needed} output frames)",
        )


@dataclass(frozen=True)
class _Enrolling:
    """Whose recording an upload is (read before the upload waits for the pool, with the session closed)."""

    user_pk: str
    tenant: str
    user_id: str


def _check_room(session: SessionDep, user: UserDep, state: StateDep) -> _Enrolling:
    """Refuse one more recording for a user who has as many as ``server.max_enrollment_utterances`` (bounds a training
    job's data; checked before the upload is read).

    The session is closed before returning: an upload waiting for the upload pool holds no database connection.
    """
    try:
        kept = session.scalar(select(func.count()).select_from(Utterance).where(Utterance.user_pk == user.id))
        if kept >= state.settings.max_enrollment_utterances:
            raise ServiceError(
                409,
                "too_many_utterances",
                f"user {user.user_id!r} already has {kept} utterances, the most server.max_enrollment_utterances "
                "allows; delete some before adding more",
            )
        return _Enrolling(user.id, user.tenant.name, user.user_id)
    finally:
        session.close()


def _received_recording(file: UploadFile, name: str, labels: List[int], state: StateDep) -> np.ndarray:
    """The upload decoded to 16 kHz mono and checked as a recording of its text (:func:`_check_recording`)."""
    with spooled_upload(file.file, name, state.storage.uploads_dir, state.settings.max_upload_bytes) as path:
        waveform = decode_audio(path, name, state.settings.max_audio_seconds)
    _check_recording(waveform, name, labels, state)
    return waveform


def _keep(state: StateDep, enrolling: _Enrolling, waveform: np.ndarray, text: str) -> UtteranceCreated:
    """Write the recording as the user's new utterance and commit its row."""
    utterance_id = new_id()
    target = state.storage.utterance_file(enrolling.tenant, enrolling.user_id, utterance_id)
    save_audio(target, waveform, SAMPLE_RATE)
    duration = round(waveform.shape[0] / SAMPLE_RATE, 3)
    with state.sessions() as session:
        session.add(
            Utterance(
                id=utterance_id,
                user_pk=enrolling.user_pk,
                text=text,
                duration=duration,
                audio_file=state.storage.relative(target),
            )
        )
        try:
            session.commit()
        except IntegrityError as exc:  # the user was deleted while the audio was written: keep none of it
            session.rollback()
            target.unlink(missing_ok=True)
            state.storage.prune_empty_folders(target.parent)
            raise ServiceError(404, "user_not_found", f"no user {enrolling.user_id!r}") from exc
    return UtteranceCreated(utterance_id=utterance_id, duration=duration)


@router.post(
    "/users/{user_id}/utterances",
    status_code=201,
    response_model=UtteranceCreated,
    responses={**_NOT_FOUND, 409: {"model": ErrorBody}, 413: {"model": ErrorBody}},
    dependencies=[Depends(single_form_fields("file", "text"))],
)
async def add_utterance(
    user: UserDep,
    session: SessionDep,
    state: StateDep,
    file: Annotated[
        UploadFile,
        File(
            description="the recording: wav, flac, ogg/opus, webm, mp3 or m4a", json_schema_extra={"format": "binary"}
        ),
    ],
    text: Annotated[str, Form(description="what was read, in Hangul (e.g. a prompt of GET /v1/prompts)")],
) -> UtteranceCreated:
    """Add one enrollment recording with its transcript; kept as 16 kHz mono WAV."""
    cleaned, labels = _checked_text(text, state)
    enrolling = await run_in_threadpool(_check_room, session, user, state)
    name = file.filename or "upload"
    with state.uploads.admitted():  # decoded and checked in the upload pool, not on the shared request threads
        waveform = await state.uploads.run(_received_recording, file, name, labels, state)
    return await run_in_threadpool(_keep, state, enrolling, waveform, cleaned)


@router.get("/users/{user_id}/utterances", response_model=UtteranceList, responses=_NOT_FOUND)
def list_utterances(user: UserDep) -> UtteranceList:
    """The user's enrollment utterances, oldest first."""
    return UtteranceList(
        utterances=[
            UtteranceRecord(utterance_id=item.id, text=item.text, duration=item.duration) for item in user.utterances
        ]
    )


@router.delete(
    "/users/{user_id}/utterances/{utterance_id}", status_code=204, response_class=Response, responses=_NOT_FOUND
)
def delete_utterance(user: UserDep, utterance_id: str, session: SessionDep, state: StateDep) -> Response:
    """Delete one utterance and its audio."""
    utterance = None
    if is_id(utterance_id):
        utterance = session.scalar(select(Utterance).where(Utterance.user_pk == user.id, Utterance.id == utterance_id))
    if utterance is None:
        raise ServiceError(404, "utterance_not_found", f"user {user.user_id!r} has no utterance {utterance_id!r}")
    path = state.storage.absolute(utterance.audio_file)
    session.delete(utterance)
    session.commit()
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # the deletion is done: the file goes with the user's folder when the user does
        logger.warning("utterance %s deleted, but its audio %s could not be removed: %s", utterance_id, path, exc)
    return Response(status_code=204)
