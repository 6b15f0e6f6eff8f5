"""Everything one service process holds: settings, database, files, the recognizer and its batcher, the pool
uploads are decoded in, the job queue, metrics. Built by :meth:`ServiceState.open` and released by :meth:`ServiceState.close` (the app's lifespan)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import torch
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from kospeech.device import resolve_device
from kospeech.inference import Recognizer
from kospeech.service.adapter_cache import ByteBoundedAdapterCache
from kospeech.service.batching import DynamicBatcher
from kospeech.service.db import create_db_engine, migrate, session_factory
from kospeech.service.jobs import JobConsumer, JobQueue, Recovery, jobs_by_state, queue_location
from kospeech.service.metrics import ServiceMetrics
from kospeech.service.settings import ServerConfig, check_model_settings
from kospeech.service.storage import Storage
from kospeech.service.training import AdapterJobRunner
from kospeech.service.upload_pool import UploadPool
from kospeech.vocabs import Vocabulary

__all__ = ["ServiceState"]

logger = logging.getLogger(__name__)


@dataclass
class ServiceState:
    """The parts of a running service (see the module docstring)."""

    settings: ServerConfig
    engine: Engine
    sessions: sessionmaker[Session]
    storage: Storage
    recognizer: Recognizer
    cache: ByteBoundedAdapterCache
    batcher: DynamicBatcher
    queue: JobQueue
    metrics: ServiceMetrics
    uploads: UploadPool
    consumer: Optional[JobConsumer] = None
    recovery: Optional[Recovery] = None

    @property
    def vocab(self) -> Vocabulary:
        """The base model's vocabulary (enrollment texts must fit it)."""
        return self.recognizer.vocab

    @classmethod
    def open(cls, settings: ServerConfig) -> ServiceState:
        """Migrate the database, load the base model, start the batcher and (if set) the in-process worker.

        Raises:
            FileNotFoundError: no base checkpoint. CheckpointError: not a checkpoint. ConfigError: see
                :func:`~kospeech.service.settings.check_model_settings`.
        """
        check_model_settings(settings)
        torch.set_num_threads(settings.torch_threads)
        storage = Storage(settings.data_dir)
        engine = create_db_engine(settings.database())
        migrate(engine)
        sessions = session_factory(engine)
        recognizer = Recognizer.from_checkpoint(
            settings.base_model_path,
            device=resolve_device(settings.device),
            batch_size=settings.batch_forward_size,
            adapter_cache_factory=lambda loader: ByteBoundedAdapterCache(
                storage.tenants_dir, loader, settings.adapter_cache_bytes
            ),
        )
        cache: ByteBoundedAdapterCache = recognizer.cache
        runner = AdapterJobRunner.from_settings(settings)
        queue = JobQueue(settings, sessions, storage, runner if settings.in_process_worker else None)
        queue.check_at_start()
        batcher = DynamicBatcher(
            recognizer,
            settings.batch_max_size,
            settings.batch_max_wait_ms,
            bind=cache.bind,
            prepare_threads=settings.prepare_threads,
        )
        uploads = UploadPool(batcher.prepare_threads + 1, settings.max_queued_requests)
        metrics = ServiceMetrics(
            queue_depth=batcher.depth,
            uploads_in_progress=uploads.in_progress,
            cache_stats=cache.stats,
            cache_bytes=lambda: cache.bytes,
            jobs_by_state=lambda: jobs_by_state(sessions),
        )
        batcher.on_batch = metrics.observe_batch
        batcher.start()
        state = cls(settings, engine, sessions, storage, recognizer, cache, batcher, queue, metrics, uploads)
        if settings.in_process_worker:
            state.consumer = queue.consumer(embedded=True)
            state.consumer.start()
            state.recovery = Recovery(queue)
            state.recovery.start()
        logger.info(
            "service ready: data_dir=%s database=%s queue=%s (%s) in_process_worker=%s",
            settings.data_dir,
            engine.url.render_as_string(hide_password=True),
            settings.queue,
            queue_location(settings),
            settings.in_process_worker,
        )
        return state

    def close(self) -> None:
        """Finish the waiting transcriptions, stop the in-process worker, release the database."""
        self.uploads.shutdown()
        self.batcher.stop()
        if self.recovery is not None:
            self.recovery.stop()
        if self.consumer is not None:  # the job in progress stops after its step and is queued again
            self.consumer.stop()
        self.engine.dispose()
        logger.info("service stopped")
