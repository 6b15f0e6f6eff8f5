"""Users: create, read, delete (every file and row of theirs), and ask for an adapter to be trained."""

from __future__ import annotations

import logging
from typing import Annotated, Optional

from fastapi import APIRouter, Body, Request, Response
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kospeech.models import registered_adapter_types
from kospeech.service.db import database_now
from kospeech.service.deps import CallerDep, SessionDep, StateDep, UserDep, checked_user_id
from kospeech.service.errors import ServiceError
from kospeech.service.jobs import QUEUE_FAULTS
from kospeech.service.keys import delete_user_keys
from kospeech.service.models import PENDING_JOB_STATES, Job, User
from kospeech.service.routers.jobs import job_status
from kospeech.service.schemas import (
    API_ERRORS,
    AdapterInfo,
    AdapterRequest,
    ErrorBody,
    JobCreated,
    UserCreate,
    UserRecord,
)

__all__ = ["LISTED_JOBS", "router", "user_record"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["users"], responses=API_ERRORS)

_NOT_FOUND = {404: {"model": ErrorBody}}


LISTED_JOBS = 20
"""How many of a user's jobs their record lists: the most recent, oldest first (each stays readable by its id)."""


def _location(request: Request, route_name: str, **path_params: object) -> str:
    """A ``Location`` for the named route, relative to the server (behind a proxy's prefix): built from the client's
    ``Host`` header, it would point wherever a forged header says."""
    return request.scope.get("root_path", "") + str(request.app.url_path_for(route_name, **path_params))


def user_record(user: User, session: Session) -> UserRecord:
    """The API view of a user: counts, the active (else newest) adapter, the :data:`LISTED_JOBS` most recent jobs."""
    active = [version for version in user.adapters if version.active]
    shown = active[-1] if active else (user.adapters[-1] if user.adapters else None)
    adapter = None
    if shown is not None:
        adapter = AdapterInfo(
            version=shown.version,
            adapter_type=shown.adapter_type,
            cer_before=shown.cer_before,
            cer_after=shown.cer_after,
            active=shown.active,
            created_at=shown.created_at,
        )
    recent = session.scalars(
        select(Job).where(Job.user_pk == user.id).order_by(Job.created_at.desc(), Job.id.desc()).limit(LISTED_JOBS)
    ).all()
    return UserRecord(
        user_id=user.user_id,
        utterances=len(user.utterances),
        audio_seconds=round(sum(utterance.duration for utterance in user.utterances), 3),
        adapter=adapter,
        jobs=[job_status(job) for job in reversed(recent)],
    )


@router.post(
    "/users",
    status_code=201,
    response_model=UserRecord,
    responses={403: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
def create_user(
    body: UserCreate, session: SessionDep, caller: CallerDep, request: Request, response: Response
) -> UserRecord:
    """Create a user (the id follows the adapter-name rule); 409 if the tenant already has it, or an id that differs
    from it only in case (both would share one folder on a case-insensitive file system)."""
    user_id = checked_user_id(body.user_id)
    if not caller.may_act_as(user_id):
        raise ServiceError(
            403, "forbidden", f"this key acts as user {caller.user_id!r} only; it cannot create user {user_id!r}"
        )
    existing = session.scalar(
        select(User.user_id).where(User.tenant_id == caller.tenant_id, func.lower(User.user_id) == user_id.lower())
    )
    if existing == user_id:
        raise ServiceError(409, "user_exists", f"user {user_id!r} already exists")
    if existing is not None:
        raise ServiceError(
            409,
            "user_exists",
            f"user {existing!r} already exists; user ids that differ only in case ({user_id!r}) are one user",
        )
    user = User(tenant_id=caller.tenant_id, user_id=user_id)
    session.add(user)
    try:
        session.commit()
    except IntegrityError as exc:  # created by a concurrent request between the check and the insert
        session.rollback()
        raise ServiceError(409, "user_exists", f"user {user_id!r} already exists") from exc
    session.refresh(user)
    response.headers["Location"] = _location(request, "get_user", user_id=user_id)
    return user_record(user, session)


@router.get("/users/{user_id}", response_model=UserRecord, responses=_NOT_FOUND)
def get_user(user: UserDep, session: SessionDep) -> UserRecord:
    """The user's enrollment figures, adapter and most recent jobs."""
    return user_record(user, session)


@router.delete("/users/{user_id}", status_code=204, response_class=Response, responses=_NOT_FOUND)
def delete_user(user: UserDep, session: SessionDep, state: StateDep, caller: CallerDep) -> Response:
    """Delete the user: audio, adapter files and every row (utterances, adapter versions, jobs, and the keys that act
    as the user: the id may later name someone else).

    The row is deleted by its primary key, and only a deletion that removed it goes on to the folder: a second
    ``DELETE`` that loaded the user before the first committed finds it gone (404) and leaves alone the folder of a
    user created since under the same id.
    """
    user_id, user_key = user.user_id, user.id
    session.expunge(user)
    if session.execute(delete(User).where(User.id == user_key)).rowcount != 1:  # its rows cascade in the database
        session.rollback()
        raise ServiceError(404, "user_not_found", f"no user {user_id!r}")
    delete_user_keys(session, caller.tenant_id, user_id)
    # the deleted rows stay locked until the commit: a writer of this user waits for it, then fails
    with state.storage.deleting_user(caller.tenant, user_id):  # the folder goes before the user is seen gone
        session.commit()
    state.cache.forget_user(user_key)
    return Response(status_code=204)


def _job_pending(user_id: str, job: Job) -> ServiceError:
    """409: the user's job that is not over yet."""
    return ServiceError(409, "job_pending", f"a training job for {user_id!r} is already {job.status}: {job.id}")


@router.post(
    "/users/{user_id}/adapter",
    status_code=202,
    response_model=JobCreated,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
def train_adapter(
    user: UserDep,
    session: SessionDep,
    state: StateDep,
    caller: CallerDep,
    request: Request,
    response: Response,
    body: Annotated[Optional[AdapterRequest], Body()] = None,
) -> JobCreated:
    """Queue a training job for the user's adapter; poll ``GET /v1/jobs/{job_id}``.

    The new adapter becomes active only if it beats the base model on the user's held-out utterances.
    """
    adapter_type = (body.adapter_type if body else None) or state.settings.default_adapter_type
    if adapter_type not in registered_adapter_types():
        raise ServiceError(
            422,
            "invalid_adapter_type",
            f"unknown adapter_type {adapter_type!r}; choose one of {sorted(registered_adapter_types())}",
        )
    needed = state.settings.min_enrollment_utterances
    if len(user.utterances) < needed:
        raise ServiceError(
            422,
            "not_enough_utterances",
            f"user {user.user_id!r} has {len(user.utterances)} utterances; training needs at least {needed}",
        )
    pending = [job for job in user.jobs if job.status in PENDING_JOB_STATES]
    if pending:
        raise _job_pending(user.user_id, pending[0])
    user_id, user_pk = user.user_id, user.id
    now = database_now(session)  # the clock job recovery measures leases with, and that orders every server's jobs
    job = Job(
        tenant_id=caller.tenant_id,
        user_pk=user_pk,
        adapter_type=adapter_type,
        status="queued",
        progress=0.0,
        created_at=now,
        queued_at=now,
    )
    session.add(job)
    try:
        session.commit()
    except IntegrityError as exc:  # between the check and the insert: another request queued one, or the user went
        session.rollback()
        other = session.scalar(select(Job).where(Job.user_pk == user_pk, Job.status.in_(PENDING_JOB_STATES)))
        if other is None:
            raise ServiceError(404, "user_not_found", f"no user {user_id!r}") from exc
        raise _job_pending(user_id, other) from exc
    try:
        state.queue.enqueue(job.id)
    except QUEUE_FAULTS as exc:  # the job is committed: a worker's recovery enqueues it later
        logger.error("job=%s is queued but could not be put on the queue (%s); recovery will enqueue it", job.id, exc)
    response.headers["Location"] = _location(request, "get_job", job_id=job.id)
    return JobCreated(job_id=job.id)
