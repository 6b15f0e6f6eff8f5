"""FastAPI dependencies: the service state, a database session, the caller's tenant (``Authorization: Bearer``),
and the caller's users and jobs (another tenant's ids answer 404, never 403)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Awaitable, Callable, Iterator, Optional

from fastapi import Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kospeech.errors import InvalidNameError
from kospeech.models.adapter_manager import validate_adapter_name
from kospeech.service.errors import ServiceError
from kospeech.service.keys import key_is_live
from kospeech.service.models import Job, User, is_id
from kospeech.service.state import ServiceState

__all__ = [
    "CALLER_STATE",
    "KEY_RECHECK_SECONDS",
    "MISSING_KEY",
    "NOT_BEARER",
    "UNCHECKABLE_KEY",
    "UNKNOWN_KEY",
    "Caller",
    "CallerDep",
    "SessionDep",
    "StateDep",
    "caller_user",
    "checked_user_id",
    "get_session",
    "single_form_fields",
]

MISSING_KEY = "missing API key: send Authorization: Bearer <key>"
"""The 401 message for a request without a bearer key (here and in the app's request guard, before the body)."""
NOT_BEARER = "the Authorization header must use the Bearer scheme: Authorization: Bearer <key>"
"""The 401 message for an ``Authorization`` header of another scheme (``Basic``, or a bare key)."""
UNKNOWN_KEY = "unknown or revoked API key"
"""The 401 message for a key that is malformed, unknown or revoked."""
UNCHECKABLE_KEY = "the API key could not be checked now; try again later"
"""The 503 message when the database cannot say whether a key is live (in the guard, and when checked again)."""
CALLER_STATE = "caller"
"""The request-state attribute where the app's request guard leaves the authenticated :class:`Caller`."""

KEY_RECHECK_SECONDS = 1.0
"""A request whose body took longer than this to arrive (after the guard checked its key) has the key checked again
before it acts: a key revoked meanwhile, e.g. with its user's deletion, stops it (a slow upload cannot outlive the
key and land in a user created again under the same id)."""

_bearer = HTTPBearer(auto_error=False, description="an API key made with kospeech-keys create")


def get_state(request: Request) -> ServiceState:
    """The service state the app was built with."""
    return request.app.state.service


StateDep = Annotated[ServiceState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    """A database session for one request (closed after it; handlers commit what they change)."""
    with state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


@dataclass(frozen=True)
class Caller:
    """Who is calling: the tenant of the presented key, and the one user it may act as for a user-scoped key
    (``kospeech-keys create --user``: a key handed to a person who enrolls themselves)."""

    tenant_id: int
    tenant: str
    admin: bool
    user_id: Optional[str] = None
    key_id: Optional[int] = None
    checked_at: float = 0.0  # time.monotonic() when the request guard found the key live

    def may_act_as(self, user_id: str) -> bool:
        """Whether this caller may read, change or transcribe as its tenant's user ``user_id``."""
        return self.user_id is None or self.user_id == user_id


def _unauthorized(message: str) -> ServiceError:
    return ServiceError(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


async def get_caller(
    request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Caller:
    """The caller of a request: the tenant whose live key the app's request guard found in
    ``Authorization: Bearer <key>`` before the body was read (``_credentials`` declares the scheme in the OpenAPI
    schema).

    Raises:
        ServiceError: 401 when no caller was found (the guard answers such requests itself; this is the backstop).
    """
    caller = getattr(request.state, CALLER_STATE, None)
    if caller is None:
        raise _unauthorized(MISSING_KEY)
    if caller.key_id is not None and time.monotonic() - caller.checked_at > KEY_RECHECK_SECONDS:
        state: ServiceState = request.app.state.service
        try:
            live = await run_in_threadpool(_key_is_live, state, caller.key_id)
        except Exception as exc:  # the database is down or failing: the server's fault, as in the guard
            raise ServiceError(503, "unavailable", UNCHECKABLE_KEY, headers={"Retry-After": "5"}) from exc
        if not live:
            raise _unauthorized(UNKNOWN_KEY)
    return caller


def _key_is_live(state: ServiceState, key_id: int) -> bool:
    with state.sessions() as session:
        return key_is_live(session, key_id)


CallerDep = Annotated[Caller, Depends(get_caller)]


def checked_user_id(user_id: str) -> str:
    """``user_id`` if it follows the adapter-name rule.

    Raises:
        ServiceError: 422 naming the rule.
    """
    try:
        return validate_adapter_name(user_id, "user id")
    except InvalidNameError as exc:
        raise ServiceError(422, "invalid_user_id", str(exc)) from exc


def caller_user(session: SessionDep, caller: CallerDep, user_id: Annotated[str, Path()]) -> User:
    """The caller's user ``user_id``.

    Raises:
        ServiceError: 422 for an id breaking the rule; 404 when the caller's tenant has no such user, or the caller's
            key is scoped to another user. Ids are case-sensitive; where the tenant has the id in another case (ids
            that differ only in case cannot both exist), the 404's message names it.
    """
    checked_user_id(user_id)
    if not caller.may_act_as(user_id):  # another user is as unknown to a user-scoped key as another tenant's
        raise ServiceError(404, "user_not_found", f"no user {user_id!r}")
    user = session.scalar(select(User).where(User.tenant_id == caller.tenant_id, User.user_id == user_id))
    if user is None:
        other_case = session.scalar(
            select(User.user_id).where(User.tenant_id == caller.tenant_id, func.lower(User.user_id) == user_id.lower())
        )
        hint = f"; user ids are case-sensitive: did you mean {other_case!r}?" if other_case else ""
        raise ServiceError(404, "user_not_found", f"no user {user_id!r}{hint}")
    return user


UserDep = Annotated[User, Depends(caller_user)]


def caller_job(session: SessionDep, caller: CallerDep, job_id: Annotated[str, Path()]) -> Job:
    """The caller's job ``job_id``.

    Raises:
        ServiceError: 404 when the caller's tenant has no such job, or it is another user's than the caller's key is
            scoped to.
    """
    job = (
        session.scalar(select(Job).where(Job.tenant_id == caller.tenant_id, Job.id == job_id))
        if is_id(job_id)
        else None
    )
    if job is None or not caller.may_act_as(job.user.user_id):
        raise ServiceError(404, "job_not_found", f"no job {job_id!r}")
    return job


JobDep = Annotated[Job, Depends(caller_job)]


def single_form_fields(*names: str) -> Callable[[Request], Awaitable[None]]:
    """A dependency refusing (422) a multipart request that sends one of the fields ``names`` more than once.

    FastAPI keeps the last of repeated fields: an enrollment's second ``text`` would be stored against a recording of
    the first. Fields the endpoint does not read (OpenAI's ``timestamp_granularities[]``, a list) are not checked.
    """

    async def check(request: Request) -> None:
        form = await request.form()  # the form FastAPI has parsed for the endpoint (kept on the request)
        repeated = [name for name in names if len(form.getlist(name)) > 1]
        if repeated:
            raise ServiceError(
                422, "invalid_request", f"{', '.join(repeated)}: sent more than once; send each field once"
            )

    return check
