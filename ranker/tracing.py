"""Traces: OpenTelemetry spans of each request, its Redis calls, each worker batch and each
rebuild, exported over OTLP/HTTP when ``RANKER_OTLP_ENDPOINT`` (or the standard
``OTEL_EXPORTER_OTLP_ENDPOINT``) is set. Off otherwise.

Off (the default), nothing of OpenTelemetry is imported (it is the optional extra
``ranker[otel]``) and each hook below costs one test of a module variable: ``traceparent()``
is ``""`` and ``span()`` does nothing. On (``configure``, once per process at the entry point,
like ``ranker.logs``):

- each request is a server span (``asgi_middleware``; ``ranker.api.traces`` names it by route);
- each Redis call made inside a span is a client span beneath it (redis-py's classes are
  instrumented; an ``EVALSHA`` is named after its script). A call made outside any span (the
  memory watcher's, the worker's blocking reads, the sampler's) starts no trace of its own;
- a submission's stream entry carries the W3C traceparent of its request's span (field ``w``),
  and the worker's batch span links to the request spans of the sessions it persisted (at most
  ``MAX_LINKS``);
- each rebuild is a span.

Process-wide, as OpenTelemetry's instrumentation is (it patches redis-py's classes): this is
the core's one module state, set by ``configure`` and undone by ``shutdown``. The tracer
provider is ranker's own, not OpenTelemetry's global one, which can be set only once per
process: tests turn traces on and off again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from ranker import logs, scripts
from ranker.settings import Settings

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace import Link, Span, Tracer, TraceState
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from opentelemetry.util.types import Attributes, AttributeValue

log = logging.getLogger("ranker.tracing")
#: ``service.name`` unless ``OTEL_SERVICE_NAME`` (or ``OTEL_RESOURCE_ATTRIBUTES``) names one.
DEFAULT_SERVICE_NAME = "ranker"
#: Links of one span (a worker batch holds up to ``RANKER_WORKER_BATCH_SIZE`` sessions): the
#: first ones are linked, the others counted in ``ranker.links_dropped``. The SDK's own limit
#: (``OTEL_SPAN_LINK_COUNT_LIMIT``) is 128 too.
MAX_LINKS = 128
#: The attribute that names a request's id (``ranker.logs``) on its span and on a link to it.
REQUEST_ID = "ranker.request_id"
#: Requests that make no span: the probes of orchestrators and Prometheus's scrapes, every few
#: seconds, would bury the traces that matter (regular expressions on the URL, query left out).
EXCLUDED_URLS = "/healthz$,/readyz$,/metrics$"
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class _Tracing:
    provider: TracerProvider
    tracer: Tracer
    propagator: TraceContextTextMapPropagator


_active: _Tracing | None = None


def enabled() -> bool:
    """Whether this process records traces."""
    return _active is not None


def configure(settings: Settings, command: str, exporter: SpanExporter | None = None) -> bool:
    """Turn traces on for this process when ``settings.otlp_endpoint`` is set, or when an
    ``exporter`` is given (tests: each span goes to it as it ends, not in batches); returns
    whether they are on. ``command``: the resource's ``ranker.command`` (serve, worker...).

    With the endpoint set but the extra ``ranker[otel]`` not installed, one warning and no
    traces: they help to look into a service, they are no reason to keep it down. A second call
    changes nothing (each process of ``serve --workers N`` makes its own first one).
    """
    global _active
    if _active is not None:
        return True
    if exporter is None and settings.otlp_endpoint is None:
        return False
    try:
        _active = _start(settings, command, exporter)
    except ImportError as exc:
        log.warning(
            "RANKER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_ENDPOINT) is set but %s is not "
            "installed: no traces (install ranker[otel])",
            exc.name or "OpenTelemetry",
        )
        return False
    # The host only: a URL may hold a password.
    where = (settings.otlp_endpoint or "").partition("://")[2].partition("/")[0].rpartition("@")[2]
    log.info("traces on, sent to %s", where or type(exporter).__name__)
    return True


def _start(settings: Settings, command: str, exporter: SpanExporter | None) -> _Tracing:
    # The optional extra ranker[otel], imported only when traces are on.
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; without either the
    # SDK says "unknown_service", which ranker replaces by its own name.
    resource = Resource.create({"ranker.command": command, "ranker.namespace": settings.namespace})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    # The sampler the SDK read from OTEL_TRACES_SAMPLER, wrapped before any tracer is made
    # (a tracer takes the provider's sampler when it is made).
    provider.sampler = _no_lone_calls(provider.sampler)
    if exporter is None:
        assert settings.otlp_endpoint is not None
        exporter = _otlp(settings.otlp_endpoint)
        provider.add_span_processor(BatchSpanProcessor(exporter))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    RedisInstrumentor().instrument(tracer_provider=provider, request_hook=_name_script)
    return _Tracing(provider, provider.get_tracer("ranker"), TraceContextTextMapPropagator())


def _otlp(endpoint: str) -> SpanExporter:
    # The optional extra ranker[otel], imported only when traces are on.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # The base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is: traces go to its /v1/traces. The other
    # OTEL_EXPORTER_OTLP_* variables (headers, timeout, compression) are read by the exporter.
    return OTLPSpanExporter(endpoint=f"{endpoint.rstrip('/')}/v1/traces")


def _no_lone_calls(configured: Sampler) -> Sampler:
    """``configured``, except that a client span with no parent (a Redis call made outside any
    request, batch or rebuild) is dropped: the memory watcher and the worker's sampler poll
    every second and the worker blocks on its reads, each a trace of one span otherwise."""
    # The optional extra ranker[otel], imported only when traces are on.
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
    from opentelemetry.trace import SpanKind, get_current_span

    class NoLoneCalls(Sampler):
        def should_sample(
            self,
            parent_context: Context | None,
            trace_id: int,
            name: str,
            kind: SpanKind | None = None,
            attributes: Attributes = None,
            links: Sequence[Link] | None = None,
            trace_state: TraceState | None = None,
        ) -> SamplingResult:
            parent = get_current_span(parent_context).get_span_context()
            if kind is SpanKind.CLIENT and not parent.is_valid:
                return SamplingResult(Decision.DROP)
            return configured.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )

        def get_description(self) -> str:
            return f"NoLoneCalls{{{configured.get_description()}}}"

    return NoLoneCalls()


@functools.cache
def _script_names() -> dict[str, str]:
    """Each Lua script's name by the SHA1 that EVALSHA sends (redis-py's, of the same text)."""
    return {hashlib.sha1(scripts.source(n).encode()).hexdigest(): n for n in scripts.NAMES}


def _name_script(span: Span, instance: Any, args: Any, kwargs: Any) -> None:
    """Name an EVALSHA span after its script (``EVALSHA submit``, attribute ``ranker.script``);
    the instrumentation records no argument (``db.statement`` is ``EVALSHA ? ? ...``)."""
    if not args or args[0] != "EVALSHA" or not span.is_recording():
        return
    sha = args[1].decode() if isinstance(args[1], bytes) else str(args[1])
    name = _script_names().get(sha)
    if name is not None:
        span.update_name(f"EVALSHA {name}")
        span.set_attribute("ranker.script", name)


def shutdown() -> None:
    """Export what is buffered, undo the instrumentation and turn traces off (tests; at exit
    the SDK exports what is left by itself)."""
    global _active
    if _active is None:
        return
    # The optional extra ranker[otel], already imported: traces were on.
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor().uninstrument()
    _active.provider.shutdown()
    _active = None


def asgi_middleware(app: Any, span_details: Callable[[Any], tuple[str, dict[str, str]]]) -> Any:
    """OpenTelemetry's ASGI middleware around ``app`` (with traces on only): a server span per
    request, named and given attributes by ``span_details(scope)``, with the request's id
    (``ranker.request_id``: the middleware runs inside ``ranker.api.access``, which sets it).
    No span for each message of a body or an answer (a live stream's would be one per event),
    and none for probes or scrapes (``EXCLUDED_URLS``)."""
    assert _active is not None, "asgi_middleware without configure()"
    # The optional extra ranker[otel], imported only when traces are on.
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(
        app,
        excluded_urls=EXCLUDED_URLS,
        default_span_details=span_details,
        server_request_hook=_name_request,
        tracer_provider=_active.provider,
        exclude_spans=["receive", "send"],
    )


def _name_request(span: Span, scope: Any) -> None:
    if span.is_recording() and (request_id := logs.request_id.get()):
        span.set_attribute(REQUEST_ID, request_id)


def traceparent() -> str:
    """The W3C traceparent of the current span when it is sampled, else ``""`` (and always
    with traces off): what a submission's stream entry carries to its worker batch's span."""
    if _active is None:
        return ""
    # The optional extra ranker[otel], already imported: traces are on.
    from opentelemetry.trace import get_current_span

    if not get_current_span().get_span_context().trace_flags.sampled:
        return ""  # no span, or one not recorded: a link to it would lead nowhere
    carrier: dict[str, str] = {}
    _active.propagator.inject(carrier)
    return carrier.get("traceparent", "")


@contextlib.contextmanager
def span(
    name: str,
    attributes: Mapping[str, AttributeValue] | None = None,
    links: Iterable[tuple[str, str | None]] = (),
    *,
    consumer: bool = False,
) -> Iterator[None]:
    """A span around the block (nothing with traces off: ``links`` is not even iterated, so
    it may be a generator). ``links``: ``(traceparent, request id or None)`` of the spans it
    follows from, of which the first ``MAX_LINKS`` are linked; ``consumer``: the span handles
    what others produced (a worker batch), else it is internal. An exception leaving the
    block marks the span an error."""
    if _active is None:
        yield
        return
    # The optional extra ranker[otel], already imported: traces are on.
    from opentelemetry.trace import SpanKind

    linked, dropped = _links(_active, links)
    values = dict(attributes or {})
    if dropped:
        values["ranker.links_dropped"] = dropped
    kind = SpanKind.CONSUMER if consumer else SpanKind.INTERNAL
    with _active.tracer.start_as_current_span(name, kind=kind, attributes=values, links=linked):
        yield


def traced(name: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """A span named ``name`` around each call of the coroutine function it decorates (with
    traces on); the fields of a dataclass it returns become the span's attributes
    (``<name>.<field>``: the numbers, texts and flags among them)."""

    def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(function)
        async def call(*args: P.args, **kwargs: P.kwargs) -> R:
            if _active is None:
                return await function(*args, **kwargs)
            with span(name):
                result = await function(*args, **kwargs)
                if dataclasses.is_dataclass(result) and not isinstance(result, type):
                    fields = dataclasses.asdict(result).items()
                    annotate({f"{name}.{k}": v for k, v in fields if isinstance(v, _SCALARS)})
                return result

        return call

    return decorate


#: The values a dataclass's field may have to become an attribute of a ``traced`` span.
_SCALARS = (bool, int, float, str)


def _links(active: _Tracing, links: Iterable[tuple[str, str | None]]) -> tuple[list[Link], int]:
    """The first ``MAX_LINKS`` valid links, and how many more there were."""
    # The optional extra ranker[otel], already imported: traces are on.
    from opentelemetry.trace import Link, get_current_span

    linked: list[Link] = []
    dropped = 0
    for parent, request_id in links:
        if len(linked) >= MAX_LINKS:
            dropped += 1
            continue
        context = get_current_span(active.propagator.extract({"traceparent": parent}))
        found = context.get_span_context()
        if found.is_valid:
            linked.append(Link(found, {REQUEST_ID: request_id} if request_id else None))
    return linked, dropped


def annotate(attributes: Mapping[str, AttributeValue]) -> None:
    """Set attributes on the current span (what a block learnt, a batch's sessions persisted);
    nothing with traces off."""
    if _active is None:
        return
    # The optional extra ranker[otel], already imported: traces are on.
    from opentelemetry.trace import get_current_span

    get_current_span().set_attributes(attributes)
