"""Dynamic batching: concurrent transcription requests, whoever's users they are, run as one model batch.

Request threads :meth:`DynamicBatcher.submit` a decoded waveform with its user's serving name (and that adapter's file)
and wait on the returned future; ``submit`` finds the speech and computes its features on the calling thread
(:meth:`Recognizer.prepare <kospeech.inference.Recognizer.prepare>`), and on a CPU also runs the model's convolutional
extractor there (the same for every user, and it gains little from batching on a CPU), so that work runs on the request
threads in parallel and never queues behind the model; at most ``prepare_threads`` prepare at once, so that they use the
cores the model thread leaves free and do not take its time slices. One model thread takes the first waiting request,
keeps collecting for up to ``max_wait_ms`` or until ``max_batch_size`` requests are in, but only while more are to come:
a request announces itself while it is being decoded (:meth:`DynamicBatcher.arriving`), and a batch with nothing queued
and nothing announced runs at once (a lone request never waits). It then hands the batch's adapter files to ``bind``
(the adapter cache's :meth:`~kospeech.service.adapter_cache.ByteBoundedAdapterCache.bind`) and runs the batch as one
mixed-user call of :meth:`Recognizer.transcribe_prepared <kospeech.inference.Recognizer.transcribe_prepared>` (the
frozen trunk once per forward pass, each row through its own user's adapter). The batch goes in shortest first: the
recognizer runs its segments ``batch_size`` at a time, each pass padded to its longest segment, so passes of similar
lengths waste little on padding (where the convolutional front end runs in the batch, on a GPU, it costs as much for
padding as for speech). The rest of the model (RNN layers, adapters, head) and decoding run on that one thread. A
request whose user's adapter cannot be loaded (its file missing or damaged) fails alone before the batch runs, and a
batch that fails anyway is run again request by request, so one bad input fails only its own request. A request whose
caller gave up (its future cancelled) is left out; nothing a batch raises ends the model thread.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np
import torch

from kospeech.inference import PreparedAudio, Recognizer, Transcription
from kospeech.models.adapter import AdapterModule

__all__ = ["BatcherStopped", "DynamicBatcher", "default_prepare_threads"]

logger = logging.getLogger(__name__)


def default_prepare_threads(model_threads: int) -> int:
    """How many request threads prepare at once by default: the cores this process may use that the model thread's
    ``model_threads`` torch threads leave free, at least one.

    Preparing (speech detection, features, on a CPU the model's extractor) is compute-bound: more preparing threads
    than free cores take time slices from the model thread, which every batch waits for (measured in
    docs/performance.md, section 6).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores - model_threads)


class BatcherStopped(RuntimeError):
    """The batcher is shutting down and takes no new requests."""


@dataclass
class _Request:
    audio: PreparedAudio
    user: Optional[str]
    adapter_file: Optional[Path]
    future: Future = field(default_factory=Future)


_STOP = object()


class DynamicBatcher:
    """Collects transcription requests into mixed-user batches run on one model thread.

    Args:
        recognizer: the process's recognizer (used from the model thread only).
        max_batch_size: the most requests per batch.
        max_wait_ms: how long the first request of a batch waits for more (while more are queued or announced).
        on_batch: called after each batch with (requests, seconds of model time).
        bind: called on the model thread before each batch with {serving name: adapter file} of its requests.
        prepare_threads: the most request threads preparing at once (speech detection, features, and on a CPU the
            model's extractor); more wait. The default (:func:`default_prepare_threads`) leaves the model thread's
            cores to the model.
    """

    def __init__(
        self,
        recognizer: Recognizer,
        max_batch_size: int,
        max_wait_ms: float,
        on_batch: Optional[Callable[[int, float], None]] = None,
        bind: Optional[Callable[[Mapping[str, Path]], None]] = None,
        prepare_threads: Optional[int] = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        if prepare_threads is None:
            prepare_threads = default_prepare_threads(torch.get_num_threads())
        if prepare_threads < 1:
            raise ValueError(f"prepare_threads must be >= 1, got {prepare_threads}")
        self.recognizer = recognizer
        self.max_batch_size = max_batch_size
        self.max_wait = max(0.0, max_wait_ms) / 1000.0
        self.on_batch = on_batch
        self.bind = bind
        self._queue: queue.Queue = queue.Queue()
        self._accepting = False
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified when a request is queued or an announced one is in
        self._thread: Optional[threading.Thread] = None
        self._forming = 0
        self._arriving = 0
        # the extractor is the same for every user and gains little from batching on a CPU: preparing runs it there
        self._run_extractor = recognizer.device.type == "cpu"
        self.prepare_threads = prepare_threads
        self._preparing = threading.BoundedSemaphore(prepare_threads)

    def start(self) -> None:
        """Start the model thread."""
        with self._lock:
            if self._thread is not None:
                return
            self._accepting = True
            self._thread = threading.Thread(target=self._loop, name="kospeech-batcher", daemon=True)
            self._thread.start()

    def stop(self, timeout: Optional[float] = None) -> None:
        """Refuse new requests, finish the waiting ones, then end the model thread."""
        with self._lock:
            if self._thread is None:
                return
            self._accepting = False
            self._queue.put(_STOP)
            self._changed.notify()
            thread, self._thread = self._thread, None
        thread.join(timeout)

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Announce a request on its way to :meth:`submit` (submit it inside the block): a forming batch waits for it."""
        with self._lock:
            self._arriving += 1
        try:
            yield
        finally:
            with self._changed:
                self._arriving -= 1
                if not self._arriving:  # a forming batch stops waiting at once, also for one that gave up (bad audio)
                    self._changed.notify()

    @contextmanager
    def preparing(self) -> Iterator[None]:
        """Hold one of the ``prepare_threads`` places while preparing audio (what :meth:`submit` does, and an enrollment
        recording's checks): compute-bound work that, unbounded, would take the model thread's time slices."""
        with self._preparing:
            yield

    def depth(self) -> int:
        """Requests waiting for the model: queued, or collected into the batch being formed."""
        return self._queue.qsize() + self._forming

    def submit(
        self,
        waveform: np.ndarray,
        sample_rate: int,
        user: Optional[str],
        adapter_file: Optional[Path] = None,
        name: Optional[str] = None,
    ) -> Future:
        """Prepare one request on the calling thread and queue it; the future gives its :class:`Transcription` or the
        error of transcribing it.

        Args:
            waveform: (N,) float32 samples.
            sample_rate: their rate.
            user: the serving name of the adapter to use, or ``None`` for the base model.
            adapter_file: that adapter's file (handed to ``bind``); ``None`` when the recognizer finds it itself.
            name: how errors name the input (the upload's file name).

        Raises:
            BatcherStopped: the batcher is not running.
            AudioError, ValueError: the waveform cannot be transcribed (raised here, not through the future).
        """
        with self.preparing():
            prepared = self.recognizer.prepare((waveform, sample_rate), run_extractor=self._run_extractor, name=name)
        request = _Request(prepared, user, adapter_file)
        with self._changed:
            if not self._accepting:
                raise BatcherStopped("the server is shutting down")
            self._queue.put(request)
            self._changed.notify()
        return request.future

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch: List[_Request] = [first]
            self._forming = 1
            deadline = time.monotonic() + self.max_wait
            with self._changed:
                while len(batch) < self.max_batch_size:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        remaining = deadline - time.monotonic()
                        if not self._arriving or remaining <= 0:  # nobody else on the way, or waited long enough
                            break
                        self._changed.wait(remaining)
                        continue
                    if item is _STOP:
                        stopping = True
                        break
                    batch.append(item)
                    self._forming = len(batch)
            self._forming = 0
            self._run(batch)

    def _run(self, batch: List[_Request]) -> None:
        """Run one collected batch; nothing it raises ends the model thread."""
        # a request whose caller gave up (its future cancelled) is dropped; the others can no longer be cancelled
        batch = [request for request in batch if request.future.set_running_or_notify_cancel()]
        try:
            self._run_claimed(batch)
        except Exception as exc:  # e.g. bind: the batch's requests fail, the thread goes on
            logger.exception("batch of %d requests failed", len(batch))
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)

    def _run_claimed(self, batch: List[_Request]) -> None:
        if not batch:
            return
        started = time.monotonic()
        if self.bind is not None:
            files: Dict[str, Path] = {r.user: r.adapter_file for r in batch if r.user and r.adapter_file}
            self.bind(files)
        batch, adapters = self._without_unusable_adapters(batch)
        # shortest first: the recognizer runs its segments batch_size at a time, padded to the longest of each pass
        batch = sorted(batch, key=lambda request: request.audio.item.seconds)
        try:
            results: List[Transcription] = self.recognizer.transcribe_prepared(
                [request.audio for request in batch],
                user=[request.user for request in batch],
                return_timestamps=True,
                adapters=adapters,
            )
        except Exception as exc:  # handed to the waiting request (one) or narrowed down to the failing requests
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            logger.warning("batch of %d failed (%s); running its requests one by one", len(batch), exc)
            for request in batch:
                self._run_claimed([request])
            return
        for request, result in zip(batch, results):
            request.future.set_result(result)
        seconds = time.monotonic() - started
        logger.debug("batch of %d requests (%d users) in %.3f s", len(batch), len({r.user for r in batch}), seconds)
        if self.on_batch is not None:
            try:
                self.on_batch(len(batch), seconds)
            except Exception:  # metrics must not cost answers
                logger.exception("the batch callback failed")

    def _without_unusable_adapters(
        self, batch: List[_Request]
    ) -> Tuple[List[_Request], Dict[Optional[str], Optional[AdapterModule]]]:
        """Fail the requests whose user's adapter cannot be loaded (a missing or damaged file) and return the others
        with their users' adapters, so that one user's broken adapter does not make the rest of the batch run request
        by request (each user is looked up once per batch: the cache's hit and miss counts stay true)."""
        unusable: Dict[str, Exception] = {}
        adapters: Dict[Optional[str], Optional[AdapterModule]] = {None: None}
        for name in dict.fromkeys(request.user for request in batch if request.user):
            try:
                adapters.update(self.recognizer.resolve_users([name]))
            except Exception as exc:
                unusable[name] = exc
        for request in batch:
            if request.user in unusable:
                request.future.set_exception(unusable[request.user])
        return [request for request in batch if request.user not in unusable], adapters
