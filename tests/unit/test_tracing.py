"""ranker.tracing without servers: off, nothing of OpenTelemetry is imported; on without the
extra, one warning; links capped; a Redis call outside any span starts no trace; the setting."""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from ranker import tracing
from ranker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
#: Builds what every traced command builds, with traces off, and prints the modules of
#: OpenTelemetry that ranker imported: those beyond what redis-py imports by itself (its own
#: metrics use OpenTelemetry's API and SDK when they are installed).
UNTRACED = """
import sys
import redis.asyncio
def otel(): return {name for name in sys.modules if name.startswith("opentelemetry")}
before = otel()
from ranker import tracing
from ranker.api.app import create_app
from ranker.cli import main
from ranker.settings import Settings
import persistence.rebuild, persistence.worker

settings = Settings(api_keys=("test-write-key-0123456789",))
assert not tracing.configure(settings, "serve")
create_app(settings)
print(sorted(otel() - before))
"""


@pytest.fixture
def traces() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure(Settings(), "test", exporter)
    yield exporter
    tracing.shutdown()


def test_without_an_endpoint_ranker_imports_nothing_of_opentelemetry() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANKER_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-c", UNTRACED],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_endpoint_without_the_extra_is_one_warning_and_no_traces(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in [name for name in sys.modules if name.startswith("opentelemetry")]:
        monkeypatch.setitem(sys.modules, name, None)  # an import of it fails, as uninstalled
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    settings = Settings(otlp_endpoint="http://collector:4318")

    with caplog.at_level(logging.WARNING, logger="ranker.tracing"):
        assert not tracing.configure(settings, "serve")

    assert not tracing.enabled()
    (record,) = caplog.records
    assert "ranker[otel]" in record.getMessage() and "no traces" in record.getMessage()


def test_an_endpoint_turns_traces_on_once() -> None:
    settings = Settings(otlp_endpoint="http://127.0.0.1:9/")
    try:
        assert tracing.configure(settings, "worker")
        assert tracing.configure(settings, "worker")  # a second call changes nothing
        assert tracing.enabled()
    finally:
        tracing.shutdown()
    assert not tracing.enabled()


def test_off_the_hooks_do_nothing() -> None:
    assert not tracing.enabled()
    assert tracing.traceparent() == ""

    def never() -> Iterator[tuple[str, str | None]]:
        raise AssertionError("links are not read with traces off")
        yield  # pragma: no cover

    with tracing.span("nothing", links=never()):
        tracing.annotate({"a": 1})


def test_a_span_links_at_most_max_links_and_counts_the_others(
    traces: InMemorySpanExporter,
) -> None:
    count = tracing.MAX_LINKS + 72
    links = ((f"00-{n + 1:032x}-{n + 1:016x}-01", f"r{n}") for n in range(count))

    with tracing.span("batch", {"ranker.batch.entries": count}, links, consumer=True):
        pass

    (span,) = traces.get_finished_spans()
    assert span.kind is SpanKind.CONSUMER
    assert len(span.links) == tracing.MAX_LINKS
    first = span.links[0]
    assert (first.context.trace_id, first.context.span_id) == (1, 1)
    assert first.attributes == {"ranker.request_id": "r0"}
    assert span.attributes is not None
    assert span.attributes["ranker.links_dropped"] == 72
    assert span.attributes["ranker.batch.entries"] == count


def test_a_malformed_traceparent_is_not_linked(traces: InMemorySpanExporter) -> None:
    with tracing.span("batch", links=[("not-a-traceparent", None), ("00-0-0-01", "r")]):
        pass

    (span,) = traces.get_finished_spans()
    assert span.links == ()


def test_the_traceparent_is_the_current_spans(traces: InMemorySpanExporter) -> None:
    assert tracing.traceparent() == ""  # no span: no field
    with tracing.span("request"):
        inside = tracing.traceparent()

    (span,) = traces.get_finished_spans()
    assert span.context is not None
    assert inside.startswith(f"00-{span.context.trace_id:032x}-{span.context.span_id:016x}-")


async def test_a_traced_function_is_a_span_with_its_reports_fields(
    traces: InMemorySpanExporter,
) -> None:
    @dataclasses.dataclass
    class Report:
        members: int
        duration_s: float
        skipped: list[str]

    @tracing.traced("ranker.job")
    async def job() -> Report:
        return Report(members=3, duration_s=0.5, skipped=["x"])

    assert await job() == Report(3, 0.5, ["x"])
    (span,) = traces.get_finished_spans()
    assert span.name == "ranker.job"
    assert span.attributes == {"ranker.job.members": 3, "ranker.job.duration_s": 0.5}
    assert span.resource.attributes["service.name"] == "ranker"


async def test_a_redis_call_is_a_span_inside_another_and_none_alone(
    traces: InMemorySpanExporter,
) -> None:
    client = fakeredis.FakeAsyncRedis()
    await client.set("outside", 1)  # the watchers' polls: no trace of their own
    with tracing.span("operation"):
        await client.get("inside")
    await client.aclose()

    by_name = {span.name: span for span in traces.get_finished_spans()}
    assert set(by_name) == {"GET", "operation"}
    operation, call = by_name["operation"], by_name["GET"]
    assert operation.context is not None and call.parent is not None
    assert call.kind is SpanKind.CLIENT and call.parent.span_id == operation.context.span_id


@pytest.mark.parametrize("name", ["RANKER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"])
def test_the_endpoint_is_read_from_either_variable(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, "https://collector.example:4318")

    assert Settings().otlp_endpoint == "https://collector.example:4318"


def test_an_empty_endpoint_is_none_and_a_bad_one_refused_without_its_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", " ")
    assert Settings().otlp_endpoint is None

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:secret@4318")
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert "secret" not in str(refused.value.errors(include_input=False))
