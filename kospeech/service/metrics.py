"""Prometheus metrics of one service process (prometheus-client), in their own registry.

Counters and histograms are updated where things happen (the request middleware, the batcher); gauges that mirror
state elsewhere (queue depth, adapter cache, jobs by state) are read when ``/metrics`` is scraped, by a collector.
Names carry their unit (``_seconds``, ``_bytes``, ``_total``).
"""

from __future__ import annotations

import logging
from typing import Callable, Dict, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from kospeech.inference.records import CacheStats

logger = logging.getLogger(__name__)

__all__ = ["CONTENT_TYPE", "ServiceMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _StateCollector(Collector):
    """Gauges read at scrape time from callables."""

    def __init__(
        self,
        queue_depth: Callable[[], int],
        uploads_in_progress: Callable[[], int],
        cache_stats: Callable[[], CacheStats],
        cache_bytes: Callable[[], int],
        jobs_by_state: Callable[[], Dict[str, int]],
    ) -> None:
        self._queue_depth = queue_depth
        self._uploads_in_progress = uploads_in_progress
        self._cache_stats = cache_stats
        self._cache_bytes = cache_bytes
        self._jobs_by_state = jobs_by_state

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "kospeech_batch_queue_depth", "Transcription requests waiting for the model", value=self._queue_depth()
        )
        yield GaugeMetricFamily(
            "kospeech_uploads_in_progress",
            "Uploads being decoded or prepared, or waiting for the upload pool",
            value=self._uploads_in_progress(),
        )
        stats = self._cache_stats()
        yield CounterMetricFamily("kospeech_adapter_cache_hits", "Adapter lookups served from memory", value=stats.hits)
        yield CounterMetricFamily(
            "kospeech_adapter_cache_misses", "Adapter lookups that loaded the file", value=stats.misses
        )
        yield CounterMetricFamily(
            "kospeech_adapter_cache_evictions", "Adapters dropped to stay within the byte bound", value=stats.evictions
        )
        yield CounterMetricFamily(
            "kospeech_adapter_cache_reloads", "Adapters loaded again because their file changed", value=stats.reloads
        )
        yield CounterMetricFamily(
            "kospeech_adapter_cache_load_failures",
            "Adapter lookups that failed on an unusable file (damaged, or made for another base)",
            value=stats.failures,
        )
        yield GaugeMetricFamily("kospeech_adapter_cache_adapters", "Adapters held in memory", value=stats.size)
        yield GaugeMetricFamily(
            "kospeech_adapter_cache_bytes", "Bytes of adapter tensors held in memory", value=self._cache_bytes()
        )
        yield GaugeMetricFamily(
            "kospeech_adapter_cache_max_bytes", "Byte bound of the adapter cache", value=stats.capacity
        )
        try:
            counts = self._jobs_by_state()
        except Exception as exc:  # the database is down: the scrape still answers, and says what it could not read
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]  # an error may have no message at all
            logger.warning("metrics: job counts not read from the database (%s)", reason)
            counts = None
        yield GaugeMetricFamily(
            "kospeech_jobs_readable",
            "1 when kospeech_jobs could be read from the database at this scrape, 0 when not (then it is left out)",
            value=0 if counts is None else 1,
        )
        if counts is not None:
            jobs = GaugeMetricFamily("kospeech_jobs", "Training jobs by state", labels=["state"])
            for state, count in counts.items():
                jobs.add_metric([state], count)
            yield jobs


class ServiceMetrics:
    """The metrics of one process.

    Args:
        queue_depth: requests waiting in the batcher.
        uploads_in_progress: uploads admitted to the upload pool.
        cache_stats: the adapter cache's counters.
        cache_bytes: bytes the adapter cache holds.
        jobs_by_state: job counts by state (from the database).
    """

    def __init__(
        self,
        queue_depth: Callable[[], int],
        uploads_in_progress: Callable[[], int],
        cache_stats: Callable[[], CacheStats],
        cache_bytes: Callable[[], int],
        jobs_by_state: Callable[[], Dict[str, int]],
    ) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kospeech_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kospeech_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "kospeech_batch_size_requests",
            "Transcription requests run together in one model batch",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "kospeech_batch_duration_seconds",
            "Model time of one transcription batch",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.audio_seconds = Counter(
            "kospeech_transcribed_audio_seconds", "Seconds of audio transcribed", registry=self.registry
        )
        self.registry.register(
            _StateCollector(queue_depth, uploads_in_progress, cache_stats, cache_bytes, jobs_by_state)
        )

    def observe_batch(self, size: int, seconds: float) -> None:
        """Record one model batch: how many requests it held and how long it took."""
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
