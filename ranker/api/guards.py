"""Decorators every handler wears: its requests timed in the metrics, and let through only with
an API key allowing them and within the caller's rate limit."""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from ranker import metrics
from ranker.api.auth import Caller, Scope
from ranker.api.ratelimit import ADDRESS
from ranker.api.state import state_of
from ranker.errors import InvalidInput, RankerError, Unauthorized
from ranker.models import FieldError

log = logging.getLogger("ranker.api")
Handler = Callable[[Request], Awaitable[Response]]


def observed(route: str) -> Callable[[Handler], Handler]:
    """Time a handler's requests by route, method and status (errors included)."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: Request) -> Response:
            started = time.perf_counter()
            status = 500
            try:
                response = await handler(request)
                status = response.status_code
                return response
            except RankerError as exc:
                status = exc.status
                raise
            finally:
                metrics.request_timer(route, request.method, status).observe(
                    time.perf_counter() - started
                )

        return wrapper

    return decorate


def client_address(request: Request, forwarded: bool) -> str:
    """The client's address: the peer's, or (``forwarded``: proxies are trusted) the one a
    proxy forwarded, which uvicorn put in the scope and which must be an IP address: 400 naming
    ``x-forwarded-for``. A peer's address is the server's to give (``testclient`` in process)."""
    host = request.client.host if request.client else "unknown"
    if not forwarded:
        return host
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        raise InvalidInput(
            "the forwarded client address is not an IP address",
            [FieldError(field="x-forwarded-for", message="an IPv4 or IPv6 address")],
            status=400,
        ) from None


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``), for one log line that a terminal
    shows as it is."""
    return repr(text)[1:-1]


def _one_authorization(request: Request) -> str | None:
    """The request's Authorization header; 400 for several: which one counts would be a guess
    (a valid key followed by a wrong one must not pass)."""
    values = request.headers.getlist("authorization")
    if len(values) > 1:
        raise InvalidInput(
            "send one Authorization header",
            [FieldError(field="authorization", message="exactly one header")],
            status=400,
        )
    return values[0] if values else None


def _authorize(request: Request, scope: Scope, client: str) -> Caller:
    """The caller of the request's API key, allowed ``scope``; a client that keeps sending wrong
    keys gets 429 for a while (``RANKER_AUTH_FAILURE_LIMIT``) whatever key it sends."""
    state = state_of(request)
    try:
        state.address_limits.check_guessing(client)
        authorization = _one_authorization(request)
        try:
            return state.keys.authorize(authorization, scope)
        except Unauthorized:
            state.address_limits.failed_authentication(client)
            raise
    except RankerError as exc:
        # For the audit trail (sampled: one line per address per interval, with a count);
        # the detail names a key by its id, never the key.
        path = printable(request.url.path)
        state.refusals.refused(
            client, f"refused {request.method} {path} from {client}: {exc.detail}"
        )
        raise


def caller_of(request: Request) -> str:
    """The key id of the request's caller (set by ``guarded``; "" for an anonymous read)."""
    caller: Caller | None = getattr(request.state, "caller", None)
    return caller.key_id if caller else ""


def is_admin(request: Request) -> bool:
    """Whether the request brought an admin key (a public read may bring one)."""
    caller: Caller | None = getattr(request.state, "caller", None)
    return caller is not None and caller.may(Scope.ADMIN)


def guarded(scope: Scope, *, charged_inside: bool = False) -> Callable[[Handler], Handler]:
    """Let a request through to its handler only with an API key allowing ``scope`` (for a
    read: unless reads are public) and within its caller's rate limit; ``charged_inside``: the
    handler charges the rate limit itself (submit: inside its script, in its one round trip)."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def wrapper(request: Request) -> Response:
            state = state_of(request)
            client = client_address(request, bool(state.settings.trusted_proxies))
            caller: Caller | None = None
            # A public read that brings a key is counted by its key, so the key is checked.
            keyed = "authorization" in request.headers
            if scope is not Scope.READ or not state.settings.public_reads or keyed:
                caller = _authorize(request, scope, client)
            if scope is Scope.READ:
                state.address_limits.spend_read(None if caller else client)
            # Changes of boards spend the write budget: there is none of their own.
            kind = Scope.READ.value if scope is Scope.READ else Scope.WRITE.value
            if not charged_inside and state.rate_limits.limits(kind):
                await state.rate_limits.spend(
                    kind, caller.key_id if caller else f"{ADDRESS}{client}"
                )
            request.state.caller = caller
            return await handler(request)

        return wrapper

    return decorate
