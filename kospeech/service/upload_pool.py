"""The pool where uploads are decoded and prepared: a few threads of their own and a bounded number waiting.

Decoding an upload and preparing it (speech detection, features, on a CPU the model's extractor) takes tens of
milliseconds to seconds of CPU. Run on the shared request threads, a burst of uploads would hold all of them and
starve the key checks and every other endpoint; run here, a waiting upload holds no thread. The pool has one thread
more than may prepare at once (:attr:`~kospeech.service.batching.DynamicBatcher.prepare_threads`), so that a decode
overlaps the preparing, and admits at most ``max_waiting`` uploads (transcriptions and enrollment recordings) at a
time: one more is refused with 503 ``busy`` before it is copied or decoded, instead of waiting in a queue without end.
Its body has been received by then (FastAPI parses a form before the endpoint runs, within ``server.max_upload_bytes``);
what the refusal saves is the decoding and the preparing.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from kospeech.service.errors import ServiceError

__all__ = ["UploadPool"]

Result = TypeVar("Result")


class UploadPool:
    """Threads for upload work, with admission bounded by ``max_waiting``.

    Args:
        threads: worker threads.
        max_waiting: the most uploads admitted at once (being decoded or prepared, or waiting for a thread).
    """

    def __init__(self, threads: int, max_waiting: int) -> None:
        if threads < 1 or max_waiting < 1:
            raise ValueError(f"an upload pool needs threads >= 1 and max_waiting >= 1, got {threads}, {max_waiting}")
        self.max_waiting = max_waiting
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="kospeech-audio")
        self._lock = threading.Lock()
        self._admitted = 0

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """Hold one of the ``max_waiting`` places while an upload's work runs in the pool (``with`` around the
        :meth:`run` calls).

        Raises:
            ServiceError: 503 ``busy`` (with ``Retry-After``) when every place is taken.
        """
        with self._lock:
            if self._admitted >= self.max_waiting:
                raise ServiceError(
                    503,
                    "busy",
                    f"{self._admitted} uploads are waiting to be decoded (server.max_queued_requests); try again shortly",
                    headers={"Retry-After": "1"},
                )
            self._admitted += 1
        try:
            yield
        finally:
            with self._lock:
                self._admitted -= 1

    def in_progress(self) -> int:
        """Uploads admitted now (being decoded or prepared, or waiting for a thread)."""
        return self._admitted

    async def run(self, function: Callable[..., Result], *args: Any) -> Result:
        """Run ``function(*args)`` on a pool thread and return (or raise) what it does."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def shutdown(self) -> None:
        """Finish the work already submitted, then end the threads."""
        self._executor.shutdown(wait=True)
