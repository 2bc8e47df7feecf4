"""ASGI middleware, outermost: every request gets an id and, unless ``RANKER_ACCESS_LOG`` is
false, one log line when it ends.

The id is the request's ``X-Request-ID`` when it is a valid one (``ranker.logs``), else a new
one. It is echoed in the response's ``X-Request-ID``, named in every record logged while the
request is served and in its problem+json body (``ranker.api.problems``), and carried in a
submission's stream entry to the worker's line for the batch that persisted it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ranker import logs
from ranker.api.auth import Caller
from ranker.api.guards import printable

log = logging.getLogger(logs.ACCESS_LOGGER)
HEADER = b"x-request-id"


class RequestContext:
    """ASGI middleware: the request id, and the request's log line (time, method, path,
    status, duration, request id, client address and the API key's id, never the key)."""

    def __init__(self, app: Any, access_log: bool) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = _incoming(scope["headers"])
        request_id = incoming if logs.valid_request_id(incoming) else logs.new_request_id()
        token = logs.request_id.set(request_id)
        started = time.perf_counter()
        status = 0  # no answer began: the client left, or the app failed before answering
        header = (HEADER, request_id.encode())

        async def send_with_id(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.access_log:
                _log_line(scope, status, time.perf_counter() - started, request_id)
            logs.request_id.reset(token)


def _incoming(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The request's X-Request-ID, if it sent exactly one that decodes as ASCII."""
    values = [value for name, value in headers if name == HEADER]
    if len(values) != 1:
        return None
    try:
        return values[0].decode("ascii")
    except UnicodeDecodeError:
        return None


def _log_line(scope: Any, status: int, duration_s: float, request_id: str) -> None:
    caller = scope.get("state", {}).get("caller")
    key_id = caller.key_id if isinstance(caller, Caller) else ""
    client = scope.get("client")
    address = client[0] if client else "-"
    method, path = scope["method"], printable(scope["path"])
    duration_ms = round(duration_s * 1000, 2)
    log.info(
        "%s %s %d %.2fms client=%s key=%s",
        method,
        path,
        status,
        duration_ms,
        address,
        key_id or "-",
        extra={
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "client": address,
            "key_id": key_id or None,
        },
    )
