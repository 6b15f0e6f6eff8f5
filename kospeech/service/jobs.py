"""Training jobs on huey, with a state machine in the ``jobs`` table that survives restarts and killed workers.

**Why huey.** It is a small, mature task queue with two storages that match the two ways the service runs: SQLite (a
file under ``data_dir``; no server to install, survives restarts, shared by the processes of one machine) and Redis
(workers on several machines). Celery, RQ and Dramatiq need a broker even on one machine (RQ and Dramatiq need Redis
or RabbitMQ, Celery's SQL transport is experimental), and a home-made queue would have to re-solve persistence,
retries and delays. huey gives us persistence, retries with a delay and a consumer; the database row gives what huey
cannot know: the job's status, progress, attempts and result for ``GET /v1/jobs/{id}``.

**States.** ``queued`` (row committed, then the task enqueued) -> ``running`` (a worker claimed the row with a
conditional update, so two deliveries of one task never both run) -> ``succeeded`` or ``failed``. An unexpected error
puts the row back to ``queued`` and huey retries the task after a delay, up to ``server.job_max_attempts`` runs;
unusable data (too few or unusable utterances) fails at once.

**Recovery** (:class:`Recovery`, run by every worker and by a server with the in-process worker, at start and then
every half lease) handles the two ways a job can be forgotten:

- a worker killed mid-training stops the job's heartbeat (sent every ``server.job_heartbeat_seconds``); once it is
  older than ``server.job_lease_seconds`` the job is queued again, or failed when out of attempts, and the run
  folder the worker left is removed (:func:`recover_stale_jobs`);
- a server killed between committing a ``queued`` row and sending its message leaves a job that no message names;
  once it has been queued for longer than the lease with no message pending or scheduled on the queue, it is
  enqueued again (:func:`recover_lost_jobs`).

Each round also removes the upload files that killed servers left in ``uploads/``
(:meth:`~kospeech.service.storage.Storage.sweep_uploads`) and what deletions left in ``trash/``
(:meth:`~kospeech.service.storage.Storage.sweep_trash`). Both recoveries are safe to run from several processes at
once (each row changes only if it is still as it was read) and at worst send a message for a job that already has
one: the claim runs it once, the other delivery does nothing.

**Ownership and shutdown.** A run is one attempt of its job: its heartbeats, its result and its failure change the
row only while it is still ``running`` at that attempt. A run whose job is gone (its user deleted) or taken over
(recovery queued it again after missed heartbeats) learns it at its next heartbeat, stops after its current step,
records nothing and removes its folder (``jobs/<job_id>-<attempt>``). A stopping consumer (:class:`JobConsumer`)
interrupts its runs the same way and puts their jobs back on the queue without using up an attempt.

**Results.** Training writes only into its run's folder. The adapter becomes the user's next version
(:func:`kospeech.service.versions.record_version`): its file is written under a name of its own, then one commit
records the version, makes it active unless rejected and marks the job succeeded. A run killed at any moment leaves
the previous version in force, never a half-written adapter nor a file served under another version's number.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path
from typing import Callable, Dict, Optional, Set

from huey import Huey, PriorityRedisHuey, SqliteHuey
from huey.consumer import Consumer
from redis import ConnectionPool
from redis.exceptions import RedisError, ResponseError
from sqlalchemy import case, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from kospeech.errors import InputError, TrainingError, TrainingInterrupted
from kospeech.service.db import database_now
from kospeech.service.models import JOB_STATES, Job, Tenant, User
from kospeech.service.repeated_errors import RepeatedErrors
from kospeech.service.settings import ServerConfig
from kospeech.service.storage import Storage, storage_fault
from kospeech.service.training import AdapterJobRunner, TrainingOutcome
from kospeech.service.versions import drop_old_versions, record_version

__all__ = [
    "TASK_NAME",
    "JobConsumer",
    "JobQueue",
    "QUEUE_FAULTS",
    "Recovery",
    "build_huey",
    "queue_location",
    "jobs_by_state",
    "recover_lost_jobs",
    "recover_stale_jobs",
]

logger = logging.getLogger(__name__)

TASK_NAME = "kospeech.train_adapter"
"""The huey task name (the same in every server and worker)."""

RETRY_DELAY_SECONDS = 5
STORAGE_RETRY_SECONDS = 60.0
"""How long a job stopped by a full or read-only disk waits before it runs again (no attempt is spent on it)."""
STORAGE_WAIT_LIMIT_SECONDS = 3600.0
"""A job older than this spends its attempts on storage faults as on any error: one that fills the disk itself (a
trunk cache spilled to it, say) must not loop for ever."""


_QUERY_PASSWORD_RE = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)
QUEUE_FAULTS = (RedisError, sqlite3.Error)
"""What the queue raises when it cannot be reached or written (Redis down or stuck, the SQLite file unwritable)."""


REDIS_TIMEOUT_SECONDS = 5.0
"""The longest a Redis connection or command waits (a worker's blocking read of the queue waits 1 s for a message):
a stopped or unreachable Redis costs a training request this, not a hang (redis-py's own default, 5 s in the pinned
release, has been no timeout in earlier ones that requirements.txt allows)."""


def build_huey(settings: ServerConfig) -> Huey:
    """The huey instance of ``settings.queue``: SQLite under ``data_dir`` or Redis at ``settings.redis_url``."""
    if settings.queue == "redis":
        pool = ConnectionPool.from_url(
            settings.redis_url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS, socket_timeout=REDIS_TIMEOUT_SECONDS
        )
        return PriorityRedisHuey(settings.queue_name, connection_pool=pool, results=False)
    return SqliteHuey(settings.queue_name, filename=_sqlite_queue_file(settings), results=False)


def _sqlite_queue_file(settings: ServerConfig) -> str:
    return f"{settings.data_dir}/queue.db"


def queue_location(settings: ServerConfig) -> str:
    """Where the queue is, for logs: the SQLite file, or the Redis URL with its credentials left out (user and
    password before an ``@``, which may hold any character; a ``password=`` in the query)."""
    if settings.queue != "redis":
        return _sqlite_queue_file(settings)
    scheme, _, rest = settings.redis_url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return scheme + "://" + _QUERY_PASSWORD_RE.sub(r"\1***", rest)


QUEUE_ERROR_LOG_SECONDS = 30.0
"""While the queue cannot be read, huey's consumer logs an error each second; at most one per this many seconds is kept."""

_QUEUE_ERRORS = RepeatedErrors(QUEUE_ERROR_LOG_SECONDS)


class JobConsumer(Consumer):
    """huey's consumer of the training queue, whose every stop is graceful: the runs in progress stop after their
    current step and their jobs are queued again without using up an attempt (:meth:`JobQueue.interrupt_running`),
    then the worker threads are joined.

    Args:
        queue: the job queue.
        workers: worker threads.
        embedded: run inside another program (``kospeech-serve``), which keeps its own signal handlers (uvicorn's
            graceful shutdown) and calls :meth:`stop`; otherwise SIGINT and SIGTERM stop it.
    """

    def __init__(self, queue: JobQueue, workers: int = 1, embedded: bool = False) -> None:
        super().__init__(queue.huey, workers=workers, worker_type="thread", periodic=False)
        self.job_queue = queue
        self.embedded = embedded
        for name in ("huey.consumer.Scheduler", "huey.consumer.Worker"):  # added once: the filter is one object
            logging.getLogger(name).addFilter(_QUEUE_ERRORS)

    def _set_signal_handlers(self) -> None:
        if not self.embedded:
            super()._set_signal_handlers()

    def stop(self, graceful: bool = False) -> None:
        """Interrupt the runs in progress, then stop once the workers are done (``graceful`` is always true)."""
        self.job_queue.interrupt_running()
        super().stop(graceful=True)


class JobQueue:
    """The training task on huey and the job rows it drives.

    Args:
        settings: the service settings.
        sessions: database sessions.
        storage: the file layout.
        runner: the model work; ``None`` in a process that only enqueues (a server without an in-process worker).
    """

    def __init__(
        self,
        settings: ServerConfig,
        sessions: sessionmaker[Session],
        storage: Storage,
        runner: Optional[AdapterJobRunner] = None,
    ) -> None:
        self.settings = settings
        self.sessions = sessions
        self.storage = storage
        self.runner = runner
        self.huey = build_huey(settings)
        self._lock = threading.Lock()
        self._running: Dict[str, threading.Event] = {}  # job id -> the interrupt of its run in this process
        self._stopping = False
        self._task = self.huey.task(
            retries=settings.job_max_attempts - 1, retry_delay=RETRY_DELAY_SECONDS, name=TASK_NAME
        )(self.run_job)

    def enqueue(self, job_id: str, delay: float = 0.0) -> None:
        """Put a committed ``queued`` job on the queue (to be taken after ``delay`` seconds), at its place in the
        tenants' fair share of the workers (:meth:`_share_tag`)."""
        priority = -self._share_tag(job_id)  # huey takes the highest priority first, the oldest message within one
        if delay > 0:
            self._task.schedule((job_id,), delay=delay, priority=priority)
        else:
            self._task(job_id, priority=priority)

    def _share_tag(self, job_id: str) -> int:
        """The job's place in the tenants' share of the workers: start-time fair queueing, one job per turn.

        A job first sent gets the tag ``max(V, T) + 1``, where ``V`` is the highest tag of the jobs workers have
        taken (every tag below it is served or being served) and ``T`` the highest of its own tenant's jobs; workers
        take the lowest tag first. So each tenant with jobs waiting gets one job per turn, however many it has queued
        and whenever the others arrive: a tenant that sends a thousand jobs holds another tenant's job behind at most
        one of its own per worker. A job sent again (a retry, recovery, a stopped worker) keeps its tag and its place.
        """
        with self.sessions.begin() as session:
            job = session.get(Job, job_id)
            if job is None:  # deleted meanwhile: the claim will find nothing
                return 0
            if job.share_tag is None:
                taken = session.scalar(select(func.max(Job.share_tag)).where(Job.status != "queued"))
                tenants = session.scalar(select(func.max(Job.share_tag)).where(Job.tenant_id == job.tenant_id))
                job.share_tag = max(taken or 0, tenants or 0) + 1
            return job.share_tag

    def depth(self) -> int:
        """Tasks waiting in the queue."""
        return self.huey.pending_count()

    def check_at_start(self) -> None:
        """What the server and the worker do with the queue at start: when it does not answer, one warning says what
        still works (so an unreachable Redis is named before huey's errors about it); when it does, a Redis queue an
        earlier release left as a list becomes a priority queue (:meth:`convert_earlier_queue`).
        """
        try:
            self.convert_earlier_queue()
            self.depth()
        except QUEUE_FAULTS as exc:
            logger.warning(
                "the job queue at %s does not answer (%s): training requests are still accepted; their jobs wait in "
                "the database and are put on the queue once it answers",
                queue_location(self.settings),
                exc,
            )

    def convert_earlier_queue(self) -> None:
        """Move the messages of a Redis list queue (releases before tenants' shares; huey's ``RedisHuey``) onto this
        release's sorted set under the same key, oldest first, at the highest share: they have waited longest. Nothing
        on SQLite, or when the key is not a list.

        Run at start and in every round of recovery: Redis deletes a sorted set once it is empty, and a server of the
        earlier release still running then makes the key a list again with its next message. The list is renamed
        first, so that of several processes at once one converts it. A process killed before the end leaves the
        renamed list behind; the jobs its messages named are queued in the database, and recovery sends them again
        once they have waited a lease (:func:`recover_lost_jobs`).
        """
        storage = self.huey.storage
        if self.settings.queue != "redis" or storage.conn.type(storage.queue_key) != b"list":
            return
        held = f"{storage.queue_key}.list"
        try:
            storage.conn.rename(storage.queue_key, held)
        except ResponseError:  # another process took it first
            return
        messages = storage.conn.lrange(held, 0, -1)
        for message in reversed(messages):  # RedisHuey pushes at the head and pops the tail
            storage.enqueue(message, 0)
        storage.conn.delete(held)
        logger.warning(
            "the job queue %s was a list (an earlier release): %d messages moved", storage.queue_key, len(messages)
        )

    def job_ids_on_queue(self) -> Set[str]:
        """Ids of the jobs that have a message waiting on the queue, now or after a retry delay."""
        tasks = [*self.huey.pending(), *self.huey.scheduled()]
        return {str(task.args[0]) for task in tasks if task.name == TASK_NAME and task.args}

    def consumer(self, workers: int = 1, embedded: bool = False) -> JobConsumer:
        """A consumer of this queue: ``kospeech-worker``'s, or (``embedded``) ``kospeech-serve``'s in-process one."""
        return JobConsumer(self, workers, embedded)

    # ------------------------------------------------------------------ the task

    def _claim(self, job_id: str) -> bool:
        """queued -> running for this worker, unless another took it, it is gone, or it has no attempts left."""
        with self.sessions.begin() as session:
            now = database_now(session)
            claimed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "queued", Job.attempts < self.settings.job_max_attempts)
                .values(status="running", attempts=Job.attempts + 1, started_at=now, heartbeat_at=now)
            ).rowcount
        return claimed == 1

    def _owned(self, job_id: str, attempt: int) -> tuple:
        """The condition of this run's row: still ``running`` and still at this attempt (not taken over by recovery)."""
        return (Job.id == job_id, Job.status == "running", Job.attempts == attempt)

    def _owns(self, job_id: str, attempt: int) -> bool:
        """Whether the job is still this run's."""
        with self.sessions() as session:
            return session.scalar(select(func.count()).select_from(Job).where(*self._owned(job_id, attempt))) == 1

    def _age_seconds(self, job_id: str) -> float:
        """Seconds since the job was created (on the database's clock)."""
        with self.sessions() as session:
            created = session.scalar(select(Job.created_at).where(Job.id == job_id))
            return (database_now(session) - created).total_seconds() if created is not None else 0.0

    def _report(self, job_id: str, attempt: int, progress: float) -> bool:
        """Progress and heartbeat of a run; ``False`` when the job is no longer this run's (its user was deleted, or
        recovery queued it again after missed heartbeats): the run then stops.

        The job's progress never goes back: a retried attempt, or a late report of the same one, shows the furthest
        any attempt got until this one goes further.
        """
        value = round(min(max(progress, 0.0), 1.0), 4)
        with self.sessions.begin() as session:
            return bool(
                session.execute(
                    update(Job)
                    .where(*self._owned(job_id, attempt))
                    .values(
                        progress=case((Job.progress > value, Job.progress), else_=value),
                        heartbeat_at=database_now(session),
                    )
                ).rowcount
            )

    def _finish(self, job_id: str, attempt: int, status: str, error: Optional[str] = None) -> None:
        """The end of this run's attempt: ``succeeded`` / ``failed``, or back to ``queued`` for a retry; nothing when
        the job is no longer this run's."""
        queued = status == "queued"
        with self.sessions.begin() as session:
            now = database_now(session)
            session.execute(
                update(Job)
                .where(*self._owned(job_id, attempt))
                .values(
                    status=status,
                    error=error,
                    finished_at=None if queued else now,
                    queued_at=now if queued else Job.queued_at,
                )
            )

    def _put_back(
        self, job_id: str, attempt: int, job_dir: Path, delay: float = 0.0, error: Optional[str] = None
    ) -> None:
        """A run stopped by a shutdown (or by a full or read-only disk): its folder removed, then queued again without
        using up an attempt, and sent to the queue (after ``delay`` seconds). The folder goes first: the job's next
        run takes the same attempt, so the same folder."""
        self.storage.remove_run_folder(job_dir)
        with self.sessions.begin() as session:
            changed = session.execute(
                update(Job)
                .where(*self._owned(job_id, attempt))
                .values(status="queued", attempts=Job.attempts - 1, queued_at=database_now(session), error=error)
            ).rowcount
        if changed:
            logger.info("job=%s: queued again%s", job_id, f" in {delay:g} s" if delay else "")
            self.enqueue(job_id, delay)

    def interrupt_running(self) -> None:
        """Stop the runs in progress after their current step and queue their jobs again (graceful shutdown)."""
        with self._lock:
            self._stopping = True
            for interrupt in self._running.values():
                interrupt.set()

    def _client_error(self, exc: BaseException) -> str:
        """What ``GET /v1/jobs/{id}`` shows of a failure: the reason, with paths relative to ``data_dir``."""
        return str(exc).replace(f"{self.storage.data_dir}/", "")

    def run_job(self, job_id: str) -> None:
        """The huey task: claim the job, train, record the version, activate it if it beats the base.

        Raises:
            Exception: an unexpected error with attempts left (huey retries the task after a delay).
        """
        if self.runner is None:
            raise RuntimeError("this process has no training runner; run kospeech-worker")
        if not self._claim(job_id):
            logger.info("job=%s not claimed (taken, finished, deleted or out of attempts)", job_id)
            return
        with self.sessions() as session:
            job = session.get(Job, job_id)
            if job is None:  # its user was deleted right after the claim
                return
            user = job.user
            tenant, user_id, user_pk, adapter_type, attempt = (
                user.tenant.name,
                user.user_id,
                user.id,
                job.adapter_type,
                job.attempts,
            )
            utterances = [(self.storage.absolute(u.audio_file), u.text) for u in user.utterances]
        needed = self.settings.min_enrollment_utterances
        if len(utterances) < needed:  # utterances deleted after the job was queued
            error = f"the user has {len(utterances)} utterances; training needs {needed}"
            self._finish(job_id, attempt, "failed", error=error)
            return
        # a folder per attempt: a run that lost the job (recovery queued it again) never shares one with its successor
        job_dir = self.storage.job_dir(tenant, user_id, f"{job_id}-{attempt}")
        interrupt = threading.Event()
        folder_removed = False
        with self._lock:
            if self._stopping:
                interrupt.set()
            self._running[job_id] = interrupt
        logger.info("job=%s user=%s/%s attempt=%d training %s adapter", job_id, tenant, user_id, attempt, adapter_type)
        try:
            outcome = self.runner.train(
                job_dir,
                user_id,
                adapter_type,
                utterances,
                lambda value: self._report(job_id, attempt, value),
                interrupt,
            )
            self._record(job_id, attempt, user_pk, outcome)
        except TrainingInterrupted:
            if self._stopping:
                folder_removed = True
                self._put_back(job_id, attempt, job_dir)
            else:
                logger.info(
                    "job=%s attempt=%d stopped: its user was deleted or the job was taken over", job_id, attempt
                )
        except Exception as exc:
            if not self._owns(job_id, attempt):  # e.g. the user's files went with the user: not the job's failure
                logger.info(
                    "job=%s attempt=%d ended (%s); its user was deleted or the job taken over", job_id, attempt, exc
                )
                return
            if isinstance(exc, (TrainingError, InputError)):
                logger.warning("job=%s failed: %s", job_id, exc)
                self._finish(job_id, attempt, "failed", error=self._client_error(exc))
                return
            fault = storage_fault(exc)
            if fault is not None and self._age_seconds(job_id) < STORAGE_WAIT_LIMIT_SECONDS:
                # no attempt spent: it passes once the disk is freed or writable again
                logger.error("job=%s attempt=%d: storage %s (%s); queued again", job_id, attempt, fault, exc)
                error = f"waiting for storage: a disk the job writes to is {fault.replace('_', '-')}; retried"
                folder_removed = True
                self._put_back(job_id, attempt, job_dir, STORAGE_RETRY_SECONDS, error)
                return
            retry = attempt < self.settings.job_max_attempts
            logger.exception("job=%s attempt=%d failed%s", job_id, attempt, "; retrying" if retry else "")
            error = f"internal error in attempt {attempt} ({type(exc).__name__}); the worker's log has the details"
            self._finish(job_id, attempt, "queued" if retry else "failed", error=error)
            if retry:
                raise
        finally:
            with self._lock:
                self._running.pop(job_id, None)
            if not folder_removed:  # a run put back removed it already: its successor may be using it by now
                self.storage.remove_run_folder(job_dir)

    def _record(self, job_id: str, attempt: int, user_pk: str, outcome: TrainingOutcome) -> None:
        """Keep the trained adapter as the user's next version (active unless rejected) and end the job, in one commit.

        Raises:
            TrainingError: the trainer saved no adapter.
            TrainingInterrupted: the job is no longer this run's (nothing is recorded, the version file is removed).
            SQLAlchemyError: the commit failed (the version file written for it is removed; the job is retried).
        """
        if outcome.adapter_file is None:
            raise TrainingError("training saved no adapter")
        version_file: Optional[Path] = None
        try:
            with self.sessions.begin() as session:
                user = session.get(User, user_pk)
                if user is None:
                    logger.info("job=%s: its user was deleted during training; result dropped", job_id)
                    return
                file_name = f"{job_id}-{attempt}"
                version_file = self.storage.version_file(user.tenant.name, user.user_id, file_name)
                row = record_version(
                    session,
                    self.storage,
                    user,
                    outcome.adapter_file,
                    file_name,
                    outcome.adapter_type,
                    outcome.rejected,
                    outcome.cer_before,
                    outcome.cer_after,
                )
                owned = session.execute(
                    update(Job)
                    .where(*self._owned(job_id, attempt))
                    .values(
                        status="succeeded",
                        progress=1.0,
                        error=None,
                        finished_at=database_now(session),
                        cer_before=outcome.cer_before,
                        cer_after=outcome.cer_after,
                        activated=row.active,
                        version=row.version,
                    )
                ).rowcount
                if not owned:  # recovery gave the job to another run: its result, not this one, counts
                    raise TrainingInterrupted(f"job {job_id} is no longer this run's (attempt {attempt})")
                version, activated, where = row.version, row.active, f"{user.tenant.name}/{user.user_id}"
                dropped = drop_old_versions(session, self.storage, user.id, self.settings.keep_inactive_versions)
        except BaseException:
            if version_file is not None:
                version_file.unlink(missing_ok=True)
                # the user deleted meanwhile: writing the file re-created their folder (the commit then failed)
                self.storage.prune_empty_folders(version_file.parent)
            raise
        for path in dropped:  # their rows are gone: no request can be given these files any more
            path.unlink(missing_ok=True)
        logger.info(
            "job=%s user=%s version=%d cer_before=%s cer_after=%s activated=%s%s",
            job_id,
            where,
            version,
            outcome.cer_before,
            outcome.cer_after,
            activated,
            "" if activated else f" reason={outcome.rejected_reason!r}",
        )


def recover_stale_jobs(queue: JobQueue) -> int:
    """Queue again every running job whose worker stopped sending heartbeats (killed) or whose run has lasted longer
    than ``server.job_timeout_minutes`` (stuck: a hung read of a shared folder still sends heartbeats), or fail it when
    out of attempts; remove the run folder that run left (a run still alive finds its job lost and stops).

    Safe to run from several workers at once: each row changes only if it still has the heartbeat that was read.

    Returns:
        How many jobs were queued again.
    """
    settings = queue.settings
    requeued, abandoned = [], []
    with queue.sessions.begin() as session:
        now = database_now(session)
        cutoff = now - timedelta(seconds=settings.job_lease_seconds)
        stuck = Job.heartbeat_at < cutoff
        if settings.job_timeout_minutes is not None:
            stuck = or_(stuck, Job.started_at < now - timedelta(minutes=settings.job_timeout_minutes))
        stale = session.execute(
            select(Job.id, Job.heartbeat_at, Job.attempts, Tenant.name, User.user_id)
            .join(User, Job.user_pk == User.id)
            .join(Tenant, User.tenant_id == Tenant.id)
            .where(Job.status == "running", stuck)
        ).all()
        for job_id, heartbeat, attempts, tenant, user_id in stale:
            retry = attempts < settings.job_max_attempts
            if heartbeat < cutoff:
                error = f"worker stopped during attempt {attempts} (no heartbeat for {settings.job_lease_seconds:g} s)"
            else:
                error = (
                    f"attempt {attempts} ran longer than server.job_timeout_minutes ({settings.job_timeout_minutes:g})"
                )
                logger.error("job=%s: %s; taken from its run (stuck?)", job_id, error)
            changed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "running", Job.heartbeat_at == heartbeat)
                .values(
                    status="queued" if retry else "failed",
                    error=error,
                    finished_at=None if retry else now,
                    queued_at=now if retry else Job.queued_at,
                )
            ).rowcount
            if changed:
                abandoned.append(queue.storage.job_dir(tenant, user_id, f"{job_id}-{attempts}"))
            if changed and retry:
                requeued.append(job_id)
    for run_dir in abandoned:  # what the stopped run left; a run still alive finds its job lost and stops anyway
        queue.storage.remove_run_folder(run_dir)
    for job_id in requeued:
        logger.warning("job=%s: its worker stopped; queued again", job_id)
        queue.enqueue(job_id)
    return len(requeued)


def recover_lost_jobs(queue: JobQueue) -> int:
    """Enqueue again every job queued for longer than the lease that no message on the queue names.

    Such a job's message was never sent (its server died between the commit and the enqueue) or was lost with the
    queue's storage. Safe to run from several processes at once: a job is enqueued by the process whose conditional
    update of ``queued_at`` succeeds.

    Returns:
        How many jobs were enqueued again.
    """
    with queue.sessions() as session:
        cutoff = database_now(session) - timedelta(seconds=queue.settings.job_lease_seconds)
        waiting = session.execute(
            select(Job.id, Job.queued_at).where(Job.status == "queued", Job.queued_at < cutoff)
        ).all()
    if not waiting:
        return 0
    on_queue = queue.job_ids_on_queue()
    lost = []
    with queue.sessions.begin() as session:
        for job_id, queued_at in waiting:
            if job_id in on_queue:
                continue
            changed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "queued", Job.queued_at == queued_at)
                .values(queued_at=database_now(session))
            ).rowcount
            if changed:
                lost.append(job_id)
    for job_id in lost:
        logger.warning("job=%s was queued with no message on the queue; enqueued again", job_id)
        queue.enqueue(job_id)
    return len(lost)


def jobs_by_state(sessions: sessionmaker[Session]) -> Dict[str, int]:
    """Job counts for every state (0 included)."""
    with sessions() as session:
        counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    return {state: int(counts.get(state, 0)) for state in JOB_STATES}


class Recovery:
    """Runs :func:`recover_stale_jobs`, :func:`recover_lost_jobs` and the sweeps of abandoned uploads and of what
    deletions left in ``trash/`` (:meth:`Storage.sweep_uploads`, :meth:`Storage.sweep_trash`) now and then every half
    lease, on a daemon thread, until :meth:`stop`."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kospeech-job-recovery", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def _chores(self) -> Dict[str, Callable[[], object]]:
        """What each round does, by the name its failures are logged under."""
        return {
            "stale jobs": lambda: recover_stale_jobs(self.queue),
            "lost jobs": lambda: recover_lost_jobs(self.queue),
            "abandoned uploads": self.queue.storage.sweep_uploads,
            "deleted users' leftovers": self.queue.storage.sweep_trash,
            "a queue an earlier release left": self.queue.convert_earlier_queue,
        }

    def _loop(self) -> None:
        interval = max(1.0, self.queue.settings.job_lease_seconds / 2)
        chores = self._chores()
        while True:
            for name, chore in chores.items():
                try:
                    chore()
                except Exception:  # whatever failed (database, queue, a locked queue file), the next round tries again
                    logger.exception("job recovery failed (%s); trying again in %.0f s", name, interval)
            if self._stop.wait(interval):
                return

    def stop(self) -> None:
        """End the thread."""
        self._stop.set()
        self._thread.join()
