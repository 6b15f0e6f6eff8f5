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
unusable data (too few or unusable utterances) fails at once. A running job writes a heartbeat every two seconds; a
worker killed mid-training stops it, and :func:`recover_stale_jobs` (run by every worker at start and then
periodically) queues it again once the heartbeat is older than ``server.job_lease_seconds``. Training writes only
into the job's folder, and activation is an atomic file replace, so a killed run never leaves a half-written adapter.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Dict, Optional

from huey import Huey, RedisHuey, SqliteHuey
from huey.consumer import Consumer
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from kospeech.errors import InputError, TrainingError
from kospeech.service.models import JOB_STATES, AdapterVersion, Job, User, utcnow
from kospeech.service.settings import ServerConfig
from kospeech.service.storage import Storage
from kospeech.service.training import AdapterJobRunner, TrainingOutcome

__all__ = [
    "TASK_NAME",
    "EmbeddedConsumer",
    "JobQueue",
    "Recovery",
    "build_huey",
    "jobs_by_state",
    "recover_stale_jobs",
]

logger = logging.getLogger(__name__)

TASK_NAME = "kospeech.train_adapter"
"""The huey task name (the same in every server and worker)."""

RETRY_DELAY_SECONDS = 5


def build_huey(settings: ServerConfig) -> Huey:
    """The huey instance of ``settings.queue``: SQLite under ``data_dir`` or Redis at ``settings.redis_url``."""
    if settings.queue == "redis":
        return RedisHuey(settings.queue_name, url=settings.redis_url, results=False)
    return SqliteHuey(settings.queue_name, filename=f"{settings.data_dir}/queue.db", results=False)


class EmbeddedConsumer(Consumer):
    """huey's consumer run inside another program (``kospeech-serve``), which keeps its own signal handlers."""

    def _set_signal_handlers(self) -> None:
        """Leave SIGINT/SIGTERM to the host process (uvicorn's graceful shutdown); :meth:`stop` ends the consumer."""


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
        self._task = self.huey.task(
            retries=settings.job_max_attempts - 1, retry_delay=RETRY_DELAY_SECONDS, name=TASK_NAME
        )(self.run_job)

    def enqueue(self, job_id: str) -> None:
        """Put a committed ``queued`` job on the queue."""
        self._task(job_id)

    def depth(self) -> int:
        """Tasks waiting in the queue."""
        return self.huey.pending_count()

    def consumer(self, workers: int = 1) -> Consumer:
        """A huey consumer of this queue (threads), for ``kospeech-worker``."""
        return Consumer(self.huey, workers=workers, worker_type="thread", periodic=False)

    def embedded_consumer(self) -> EmbeddedConsumer:
        """A one-thread consumer for ``kospeech-serve``'s in-process worker."""
        return EmbeddedConsumer(self.huey, workers=1, worker_type="thread", periodic=False)

    # ------------------------------------------------------------------ the task

    def _claim(self, job_id: str) -> bool:
        """queued -> running for this worker, unless another took it, it is gone, or it has no attempts left."""
        now = utcnow()
        with self.sessions.begin() as session:
            claimed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "queued", Job.attempts < self.settings.job_max_attempts)
                .values(status="running", attempts=Job.attempts + 1, started_at=now, heartbeat_at=now, progress=0.0)
            ).rowcount
        return claimed == 1

    def _report(self, job_id: str, progress: float) -> None:
        with self.sessions.begin() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "running")
                .values(progress=round(min(max(progress, 0.0), 1.0), 4), heartbeat_at=utcnow())
            )

    def _finish(self, job_id: str, status: str, error: Optional[str] = None, **result: object) -> None:
        with self.sessions.begin() as session:
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(status=status, error=error, finished_at=utcnow() if status != "queued" else None, **result)
            )

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
            user = job.user
            tenant, user_id, user_pk, adapter_type, attempts = (
                user.tenant.name,
                user.user_id,
                user.id,
                job.adapter_type,
                job.attempts,
            )
            utterances = [(self.storage.absolute(u.audio_file), u.text) for u in user.utterances]
        needed = self.settings.min_enrollment_utterances
        if len(utterances) < needed:  # utterances deleted after the job was queued
            self._finish(job_id, "failed", error=f"the user has {len(utterances)} utterances; training needs {needed}")
            return
        job_dir = self.storage.job_dir(tenant, user_id, job_id)
        logger.info("job=%s user=%s/%s attempt=%d training %s adapter", job_id, tenant, user_id, attempts, adapter_type)
        try:
            outcome = self.runner.train(
                job_dir, user_id, adapter_type, utterances, lambda value: self._report(job_id, value)
            )
            self._record(job_id, tenant, user_id, user_pk, outcome)
        except (TrainingError, InputError) as exc:
            logger.warning("job=%s failed: %s", job_id, exc)
            self._finish(job_id, "failed", error=str(exc))
        except Exception as exc:
            retry = attempts < self.settings.job_max_attempts
            logger.exception("job=%s attempt=%d failed%s", job_id, attempts, "; retrying" if retry else "")
            self._finish(job_id, "queued" if retry else "failed", error=f"{type(exc).__name__}: {exc}")
            if retry:
                raise
        finally:
            if job_dir.exists():
                self.storage.remove_tree(job_dir)

    def _record(self, job_id: str, tenant: str, user_id: str, user_pk: str, outcome: TrainingOutcome) -> None:
        """Keep the trained adapter as the user's next version; make it the active one if it was not rejected."""
        if outcome.adapter_file is None:
            raise TrainingError("training saved no adapter")
        with self.sessions.begin() as session:
            user = session.get(User, user_pk)
            if user is None:
                logger.info("job=%s: user %s/%s was deleted during training; result dropped", job_id, tenant, user_id)
                return
            version = (
                session.scalar(select(func.max(AdapterVersion.version)).where(AdapterVersion.user_pk == user_pk)) or 0
            ) + 1
            version_file = self.storage.version_file(tenant, user_id, version)
            self.storage.copy_atomic(outcome.adapter_file, version_file)
            activated = not outcome.rejected
            if activated:
                session.execute(update(AdapterVersion).where(AdapterVersion.user_pk == user_pk).values(active=False))
            session.add(
                AdapterVersion(
                    user_pk=user_pk,
                    version=version,
                    adapter_type=outcome.adapter_type,
                    cer_before=outcome.cer_before,
                    cer_after=outcome.cer_after,
                    active=activated,
                    rejected=outcome.rejected,
                    file=self.storage.relative(version_file),
                )
            )
            session.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(
                    status="succeeded",
                    progress=1.0,
                    error=None,
                    finished_at=utcnow(),
                    cer_before=outcome.cer_before,
                    cer_after=outcome.cer_after,
                    activated=activated,
                    version=version,
                )
            )
            if activated:  # last step before commit: a failure here rolls the rows back
                self.storage.copy_atomic(version_file, self.storage.active_adapter(tenant, user_id))
        logger.info(
            "job=%s user=%s/%s version=%d cer_before=%s cer_after=%s activated=%s%s",
            job_id,
            tenant,
            user_id,
            version,
            outcome.cer_before,
            outcome.cer_after,
            activated,
            "" if activated else f" reason={outcome.rejected_reason!r}",
        )


def recover_stale_jobs(queue: JobQueue) -> int:
    """Queue again every running job whose worker stopped sending heartbeats (killed), or fail it when out of attempts.

    Safe to run from several workers at once: each row changes only if it still has the heartbeat that was read.

    Returns:
        How many jobs were queued again.
    """
    settings = queue.settings
    cutoff = utcnow() - timedelta(seconds=settings.job_lease_seconds)
    requeued = []
    with queue.sessions.begin() as session:
        stale = session.execute(
            select(Job.id, Job.heartbeat_at, Job.attempts).where(Job.status == "running", Job.heartbeat_at < cutoff)
        ).all()
        for job_id, heartbeat, attempts in stale:
            retry = attempts < settings.job_max_attempts
            changed = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == "running", Job.heartbeat_at == heartbeat)
                .values(
                    status="queued" if retry else "failed",
                    error=f"worker stopped during attempt {attempts} (no heartbeat for {settings.job_lease_seconds:g} s)",
                    finished_at=None if retry else utcnow(),
                )
            ).rowcount
            if changed and retry:
                requeued.append(job_id)
    for job_id in requeued:
        logger.warning("job=%s: its worker stopped; queued again", job_id)
        queue.enqueue(job_id)
    return len(requeued)


def jobs_by_state(sessions: sessionmaker[Session]) -> Dict[str, int]:
    """Job counts for every state (0 included)."""
    with sessions() as session:
        counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
    return {state: int(counts.get(state, 0)) for state in JOB_STATES}


class Recovery:
    """Runs :func:`recover_stale_jobs` now and then every half lease, on a daemon thread, until :meth:`stop`."""

    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kospeech-job-recovery", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def _loop(self) -> None:
        interval = max(1.0, self.queue.settings.job_lease_seconds / 2)
        while True:
            try:
                recover_stale_jobs(self.queue)
            except SQLAlchemyError:
                logger.exception("job recovery could not reach the database; trying again later")
            if self._stop.wait(interval):
                return

    def stop(self) -> None:
        """End the thread."""
        self._stop.set()
        self._thread.join()
