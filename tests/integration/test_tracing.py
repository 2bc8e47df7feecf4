"""Traces (ranker.tracing) on the real servers, recorded by the SDK's in-memory exporter: one
submission makes a request span with its Redis calls beneath it, the worker's span for the batch
that persisted it links to that request span, a rebuild makes a span of its own; with traces
off, nothing is recorded and the stream entry has no trace field."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.rebuild import Rebuild
from persistence.worker import Worker
from ranker import tracing
from ranker.api.app import create_app
from ranker.keys import Keys
from ranker.settings import Settings
from tests.fixtures.ranker import api_process

SUBMIT = "/api/leaderboard/submit"


@pytest.fixture
def spans(settings: Settings) -> Iterator[InMemorySpanExporter]:
    """Traces on for the test, each span in this exporter as it ends; off again afterwards.
    Asked for first, so that it is undone last (after the app and the worker)."""
    exporter = InMemorySpanExporter()
    assert tracing.configure(settings, "test", exporter)
    yield exporter
    tracing.shutdown()


def named(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = [span for span in spans if span.name == name]
    assert len(found) == 1, (name, [span.name for span in spans])
    return found[0]


def beneath(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    """The spans whose parent is ``parent`` (same trace, its span id as their parent's)."""
    assert parent.context is not None
    return [
        span
        for span in spans
        if span.parent is not None
        and span.parent.span_id == parent.context.span_id
        and span.context is not None
        and span.context.trace_id == parent.context.trace_id
    ]


async def last_entry(redis: Redis, settings: Settings) -> dict[bytes, bytes]:
    entries = await redis.xrange(Keys(settings.namespace).events)
    assert entries
    fields: dict[bytes, bytes] = entries[-1][1]
    return fields


async def test_a_submission_has_a_request_span_its_redis_calls_and_a_linked_batch_span(
    spans: InMemorySpanExporter,
    settings: Settings,
    redis: Redis,
    worker: Worker,
    loaded: None,
) -> None:
    spans.clear()  # the rebuild that loaded the boards
    async with api_process(settings) as http:
        answer = await http.post(
            SUBMIT, json={"user_id": 7, "score": 40}, headers={"X-Request-ID": "trace-me-1"}
        )
    assert answer.status_code == 200, answer.text
    finished = spans.get_finished_spans()

    request = named(finished, "POST /api/leaderboard/submit")
    assert request.kind is SpanKind.SERVER and request.context is not None
    assert request.parent is None
    assert request.attributes is not None
    assert request.attributes["ranker.request_id"] == "trace-me-1"
    assert request.attributes["http.route"] == SUBMIT
    # The Lua call that counted it is a client span beneath the request span (after a NOSCRIPT
    # on this new client, redis-py loads the script and calls it again: two spans then).
    calls = beneath(finished, request)
    *_, submit = [span for span in calls if span.name == "EVALSHA submit"]
    assert submit.kind is SpanKind.CLIENT and submit.status.is_ok
    assert submit.attributes is not None and submit.attributes["ranker.script"] == "submit"
    # Every Redis call of the process was made inside the request: none started a trace.
    lone = [s.name for s in finished if s.kind is SpanKind.CLIENT and s.parent is None]
    assert lone == []

    # The stream entry carries the request span's context to the worker.
    context = request.context
    fields = await last_entry(redis, settings)
    version, trace_id, span_id, flags = fields[b"w"].decode().split("-")
    assert (version, trace_id, span_id) == (
        "00",
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
    )
    assert int(flags, 16) & 1  # sampled
    assert fields[b"q"] == b"trace-me-1"

    spans.clear()
    assert await worker.drain() == 1
    finished = spans.get_finished_spans()
    batch = named(finished, "ranker.worker.batch")
    assert batch.kind is SpanKind.CONSUMER and batch.parent is None
    (link,) = batch.links
    assert (link.context.trace_id, link.context.span_id) == (context.trace_id, context.span_id)
    assert link.attributes is not None and link.attributes["ranker.request_id"] == "trace-me-1"
    assert batch.attributes is not None
    assert batch.attributes["ranker.batch.entries"] == 1
    assert batch.attributes["ranker.batch.persisted"] == 1
    assert batch.attributes["ranker.worker.consumer"] == worker.consumer
    assert "EVALSHA ack" in {span.name for span in beneath(finished, batch)}
    # The worker's reads outside any batch made no trace.
    assert [s.name for s in finished if s.parent is None] == ["ranker.worker.batch"]


async def test_a_rebuild_is_a_span_with_its_redis_calls_and_its_numbers(
    spans: InMemorySpanExporter,
    settings: Settings,
    redis: Redis,
    pool: AsyncConnectionPool,
    loaded: None,
) -> None:
    spans.clear()
    report = await Rebuild(settings, redis, pool).run()
    finished = spans.get_finished_spans()

    rebuild = named(finished, "ranker.rebuild")
    assert rebuild.parent is None and rebuild.kind is SpanKind.INTERNAL
    assert rebuild.attributes is not None
    assert rebuild.attributes["ranker.rebuild.attempts"] == report.attempts == 1
    assert rebuild.attributes["ranker.rebuild.periods"] == report.periods
    assert rebuild.attributes["ranker.rebuild.members"] == report.members
    calls = {span.name for span in beneath(finished, rebuild)}
    assert {"EVALSHA rebuild_begin", "EVALSHA rebuild_swap"} <= calls
    assert rebuild.resource.attributes["service.name"] == "ranker"
    assert rebuild.resource.attributes["ranker.command"] == "test"


async def test_requests_are_named_by_their_route_and_probes_make_no_span(
    spans: InMemorySpanExporter, settings: Settings, loaded: None
) -> None:
    spans.clear()
    async with api_process(settings) as http:
        assert (await http.get("/api/leaderboard/rank/424242")).status_code == 404
        assert (await http.get("/api/leaderboard/rank/17")).status_code == 404
        assert (await http.get("/no/such/path")).status_code == 404
        assert (await http.get("/healthz")).status_code == 200
    servers = [s for s in spans.get_finished_spans() if s.kind is SpanKind.SERVER]

    assert [s.name for s in servers] == [
        "GET /api/leaderboard/rank/{user_id}",
        "GET /api/leaderboard/rank/{user_id}",
        "GET",
    ]
    assert all(s.attributes and s.attributes["ranker.request_id"] for s in servers)


async def test_with_traces_off_nothing_is_recorded_and_entries_carry_no_trace(
    settings: Settings, redis: Redis, loaded: None
) -> None:
    exporter = InMemorySpanExporter()
    assert tracing.configure(settings, "test", exporter)
    tracing.shutdown()  # on, then off: what any test after a traced one finds

    assert not tracing.enabled()
    assert not hasattr(Redis.execute_command, "__wrapped__")  # redis-py's classes unpatched
    # ranker never sets OpenTelemetry's global provider: the API's default, a proxy.
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    middleware = [m.cls for m in create_app(settings).user_middleware]
    assert tracing.asgi_middleware not in middleware
    async with api_process(settings) as http:
        answer = await http.post(SUBMIT, json={"user_id": 8, "score": 1})
    assert answer.status_code == 200
    assert exporter.get_finished_spans() == ()
    fields = await last_entry(redis, settings)
    assert b"w" not in fields and fields[b"q"]  # the request id is there, no trace field
