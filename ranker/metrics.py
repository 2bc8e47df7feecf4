"""Every Prometheus metric of ranker, defined once. Names follow Prometheus conventions: the unit
is the last word of the name and counters end in ``_total``.

With ``ranker serve --workers N`` (N > 1) the processes share ``PROMETHEUS_MULTIPROC_DIR`` and
``/metrics`` aggregates them (prometheus-client's multiprocess mode): gauges then report the
most recent value any process set.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    PLATFORM_COLLECTOR,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)

from ranker.errors import ConfigurationError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# python_info names the runtime's exact version: worth nothing on a dashboard, and a hint to an
# attacker of what to try where /metrics is public.
REGISTRY.unregister(PLATFORM_COLLECTOR)
_LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

http_request_duration = Histogram(
    "ranker_http_request_duration_seconds",
    "Time to answer an HTTP request (its _count is the number of requests).",
    ["route", "method", "status"],
    buckets=_LATENCY_BUCKETS_S,
)

read_batch_size = Histogram(
    "ranker_read_batch_size",
    "Read scripts per batch sent to Redis (ranker.coalesce): the reads that reached Redis in "
    "one event-loop turn and shared one round trip.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
top_cache = Counter(
    "ranker_top_cache_total",
    "Top pages answered with RANKER_TOP_CACHE on (ranker.page_cache), by result: hit (Redis "
    "said the process's copy is current: its bytes were sent), miss (none kept, or a write "
    "changed it: the page was read and encoded).",
    ["result"],
)


@functools.cache
def request_timer(route: str, method: str, status: int) -> Any:
    """The child of ``http_request_duration`` for one route, method and status, looked up once
    (``labels()`` validates and locks on every call); the routes, their methods and the statuses
    ranker answers are few, so the cache stays small."""
    return http_request_duration.labels(route, method, str(status))


submissions = Counter(
    "ranker_submissions_total",
    "Submissions by outcome: accepted, duplicate, rejected (bad input), backlog_full, "
    "memory_full (Redis memory above the watermark, or Redis refusing writes at its "
    "maxmemory), unavailable (Redis away), conflict (a session id reused with other data), "
    "client_closed (hung up mid-body), error.",
    ["outcome"],
)
backlog = Gauge(
    "ranker_backlog_events",
    "Accepted submissions not yet persisted to PostgreSQL.",
    multiprocess_mode="mostrecent",
)
ready = Gauge(
    "ranker_ready",
    "1 when /readyz answers 200, 0 when it answers 503; computed every few seconds by each API "
    "process and by every /readyz request.",
    # Not min: nothing marks an API process dead, so a killed one's file would hold its last
    # value for good, and a 0 it left would outlive it. Readiness comes from what every process
    # of a deployment shares (its Redis, its namespace, its database binding), so the most
    # recent value is theirs too, give or take one computation.
    multiprocess_mode="mostrecent",
)
worker_lag = Gauge(
    "ranker_worker_lag_seconds",
    "Age of the oldest accepted submission not yet persisted (0 when none waits).",
    multiprocess_mode="mostrecent",
)
connections_refused = Counter(
    "ranker_connections_refused_total",
    "Connections the edge closed: header_timeout, body_timeout, head_too_large, pipelined "
    "(too many requests ahead of their answers), stalled (not reading its answer), invalid "
    "(not HTTP), full (no room: 503), evicted (the longest idle one, to make room).",
    ["reason"],
)
redis_memory_used = Gauge(
    "ranker_redis_memory_used_bytes",
    "Redis's used_memory (INFO memory), read about once a second by each API process.",
    multiprocess_mode="mostrecent",
)
redis_memory_max = Gauge(
    "ranker_redis_maxmemory_bytes",
    "Redis's maxmemory (0: none configured, so no watermark applies).",
    multiprocess_mode="mostrecent",
)
stream_clients = Gauge(
    "ranker_stream_clients",
    "Live streams (server-sent events) open now.",
    # Each process counts its own streams: /metrics adds up those of the processes alive.
    multiprocess_mode="livesum",
)
stream_reads = Counter(
    "ranker_stream_reads_total",
    "Reads of a watched top page by the live feeds (one per feed per tick at most, however many "
    "streams show it).",
)
stream_events = Counter(
    "ranker_stream_events_total",
    "Events written to live streams, by event: top, unavailable.",
    ["event"],
)
redis_errors = Counter("ranker_redis_errors_total", "Redis calls that failed.")
database_errors = Counter("ranker_database_errors_total", "PostgreSQL transactions that failed.")
persisted_events = Counter(
    "ranker_worker_persisted_events_total", "Stream entries committed to PostgreSQL."
)
batch_size = Histogram(
    "ranker_worker_batch_size_events",
    "Entries per write-behind batch.",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
)
commit_duration = Histogram(
    "ranker_worker_commit_duration_seconds",
    "Time of one write-behind PostgreSQL transaction.",
    buckets=_LATENCY_BUCKETS_S,
)
rebuild_duration = Histogram(
    "ranker_rebuild_duration_seconds",
    "Time of a whole rebuild of a namespace's boards.",
    buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
rebuild_members = Gauge(
    "ranker_rebuild_members_loaded",
    "Members loaded into the boards by the last rebuild.",
    multiprocess_mode="mostrecent",
)


def _registry() -> CollectorRegistry:
    """This process's metrics, or every API process's when they share a multiprocess directory."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return registry
    return REGISTRY


def exposition() -> tuple[bytes, str]:
    """The text of ``/metrics`` and its content type."""
    return generate_latest(_registry()), CONTENT_TYPE_LATEST


def serve_on_own_port(host: str, port: int) -> None:
    """Serve ``/metrics`` on a port of its own (``RANKER_METRICS_PORT``), from a thread of this
    process: with ``--workers N``, the supervising process, which reads every API process's
    files."""
    try:
        start_http_server(port, addr=host, registry=_registry())
    except OSError as exc:
        raise ConfigurationError(f"RANKER_METRICS_PORT {port}: {exc.strerror}") from exc
