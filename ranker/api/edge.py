"""ASGI middleware at the edge: requests refused before any route sees them."""

from __future__ import annotations

from typing import Any

from ranker.api.inputs import too_large
from ranker.api.problems import problem
from ranker.errors import InvalidInput


class RequestLimits:
    """ASGI middleware: a request whose path and query, or whose headers, are longer than the
    settings allow is answered 414 or 431 before any route sees it."""

    def __init__(self, app: Any, max_url_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_url_bytes = max_url_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        refusal = self._refusal(scope) if scope["type"] == "http" else None
        if refusal is None:
            await self.app(scope, receive, send)
            return
        response = problem(refusal.status, refusal.title, refusal.detail, refusal.errors)
        await response(scope, receive, send)

    def _refusal(self, scope: Any) -> InvalidInput | None:
        url_bytes = len(scope.get("raw_path") or scope["path"].encode())
        url_bytes += len(scope.get("query_string", b""))
        if url_bytes > self.max_url_bytes:
            return too_large("the path and query", "url", self.max_url_bytes, 414)
        header_bytes = sum(len(name) + len(value) for name, value in scope["headers"])
        if header_bytes > self.max_header_bytes:
            return too_large("the headers", "headers", self.max_header_bytes, 431)
        return None
