"""The service's database tables (SQLAlchemy 2.x ORM): tenants, hashed API keys, users, utterances, adapter versions,
jobs.

The schema is created and upgraded by the Alembic migrations in :mod:`kospeech.service.migrations` (never by
``create_all``); a test compares both. Users and jobs have random string ids (``uuid4().hex``) so that ids never
repeat across deletions and a worker on another machine can name files by them. Every row of a user (utterances,
adapter versions, jobs) is deleted with the user (``ON DELETE CASCADE`` and ORM cascades).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import List, Optional

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = [
    "JOB_STATES",
    "PENDING_JOB_STATES",
    "AdapterVersion",
    "ApiKey",
    "Base",
    "Job",
    "Tenant",
    "User",
    "Utterance",
    "UtcDateTime",
    "is_id",
    "new_id",
    "utcnow",
]

JOB_STATES = ("queued", "running", "succeeded", "failed")
"""A job's ``status``: queued -> running -> succeeded | failed; a retried job goes from running back to queued."""


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class UtcDateTime(TypeDecorator):
    """A timezone-aware UTC time on every database: SQLite keeps no zone, so what it gives back is marked UTC (the
    API then shows the same ISO 8601 times, with their offset, on SQLite as on PostgreSQL)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: Optional[datetime], dialect: Dialect) -> Optional[datetime]:
        return value if value is None or value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def new_id() -> str:
    """A random 32-character hex id (users, utterances, jobs)."""
    return uuid.uuid4().hex


def is_id(text: str) -> bool:
    """Whether ``text`` has the form :func:`new_id` gives (anything else names no row, and some text, e.g. with a NUL
    character, PostgreSQL refuses to compare at all)."""
    return len(text) == 32 and all(character in "0123456789abcdef" for character in text)


class Base(DeclarativeBase):
    """Declarative base of every table."""


class Tenant(Base):
    """An organisation: its keys see only its users, utterances, adapters and jobs. Names are unique regardless of
    case (each names a folder, and some file systems ignore case)."""

    __tablename__ = "tenants"
    __table_args__ = (Index("uq_tenants_name_folded", text("lower(name)"), unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    keys: Mapped[List[ApiKey]] = relationship(back_populates="tenant", cascade="all, delete-orphan")


class ApiKey(Base):
    """An API key, stored as a lookup prefix and the SHA-256 digest of the whole key (never the key itself); a key
    with a ``user_id`` acts as that one user of its tenant only."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    digest: Mapped[str] = mapped_column(String(64))
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    user_id: Mapped[Optional[str]] = mapped_column(String(64), nullable=True)  # the one user it may act as, if set
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime, nullable=True)

    tenant: Mapped[Tenant] = relationship(back_populates="keys")


class User(Base):
    """A tenant's end user (``user_id`` follows the adapter-name rule, unique per tenant regardless of case: it names
    a folder, and some file systems ignore case)."""

    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("tenant_id", "user_id", name="uq_users_tenant_user"),
        Index("uq_users_tenant_user_folded", "tenant_id", text("lower(user_id)"), unique=True),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    tenant: Mapped[Tenant] = relationship()
    utterances: Mapped[List[Utterance]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True, order_by="Utterance.created_at"
    )
    adapters: Mapped[List[AdapterVersion]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True, order_by="AdapterVersion.version"
    )
    jobs: Mapped[List[Job]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True, order_by="Job.created_at"
    )


class Utterance(Base):
    """One enrollment recording: 16 kHz mono WAV under the user's folder, with its transcript."""

    __tablename__ = "utterances"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    user_pk: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(Text)
    duration: Mapped[float] = mapped_column(Float)
    audio_file: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="utterances")


class AdapterVersion(Base):
    """One trained adapter of a user (accepted or rejected); at most one per user is ``active``.

    The active row is the one record of which adapter a user is served: transcription loads the row's ``file`` (a
    file written once, before the row was committed, and never changed), so activating a version is one commit.
    """

    __tablename__ = "adapter_versions"
    __table_args__ = (UniqueConstraint("user_pk", "version", name="uq_adapter_versions_user_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_pk: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    adapter_type: Mapped[str] = mapped_column(String(64))
    cer_before: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    cer_after: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    rejected: Mapped[bool] = mapped_column(Boolean, default=False)
    file: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    user: Mapped[User] = relationship(back_populates="adapters")


PENDING_JOB_STATES = ("queued", "running")
"""The states of a job that is not over yet: a user has at most one such job."""

# the condition of the one-pending-job-per-user index
_PENDING_JOB = f"status IN {PENDING_JOB_STATES!r}"


class Job(Base):
    """A training job: its state machine, progress, attempts, worker heartbeat and result.

    ``queued_at`` is when the job last became ``queued`` (created, or put back for a retry); a job queued for longer
    than the lease with no message on the queue is enqueued again (:func:`kospeech.service.jobs.recover_lost_jobs`).
    ``queued_at``, ``started_at`` and ``heartbeat_at`` are on the clock leases are measured with
    (:func:`kospeech.service.db.database_now`: PostgreSQL's own, so machines with skewed clocks agree).
    ``share_tag`` is the job's place in the tenants' fair share of the workers, set when it is first sent to the
    queue (:meth:`kospeech.service.jobs.JobQueue.enqueue`).
    """

    __tablename__ = "jobs"
    __table_args__ = (
        # at most one queued or running job per user, so two requests at once cannot both queue one
        Index(
            "uq_jobs_user_pending",
            "user_pk",
            unique=True,
            sqlite_where=text(_PENDING_JOB),
            postgresql_where=text(_PENDING_JOB),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    user_pk: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    adapter_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    cer_before: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    cer_after: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    activated: Mapped[Optional[bool]] = mapped_column(Boolean, nullable=True)
    version: Mapped[Optional[int]] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    queued_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime, nullable=True, default=utcnow)
    started_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime, nullable=True)
    heartbeat_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime, nullable=True)
    finished_at: Mapped[Optional[datetime]] = mapped_column(UtcDateTime, nullable=True)
    share_tag: Mapped[Optional[int]] = mapped_column(BigInteger, nullable=True, index=True)

    user: Mapped[User] = relationship(back_populates="jobs")
