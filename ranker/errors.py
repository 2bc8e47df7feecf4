"""The project's own errors. Redis and psycopg errors are translated into these at the boundary
where they are raised; the API turns each into one ``application/problem+json`` response."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ranker.models import FieldError


class RankerError(Exception):
    """Base of every error ranker raises on purpose."""

    status = 500
    title = "Internal error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def headers(self) -> Mapping[str, str]:
        """Extra response headers (Retry-After for the 503s)."""
        return {}


class InvalidInput(RankerError):
    """The request is malformed; ``errors`` names each offending field."""

    status = 422
    title = "Invalid request"

    def __init__(self, detail: str, errors: Sequence[FieldError] = (), status: int = 422) -> None:
        super().__init__(detail)
        self.errors = list(errors)
        self.status = status


class NotFound(RankerError):
    """The requested player or resource does not exist."""

    status = 404
    title = "Not found"


class Unavailable(RankerError):
    """The service cannot answer now; the client should retry after ``retry_after_s``."""

    status = 503
    title = "Service unavailable"

    def __init__(self, detail: str, retry_after_s: int = 1) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s

    @property
    def headers(self) -> Mapping[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class RedisUnavailable(Unavailable):
    """Redis did not answer (connection refused, timeout, failover in progress)."""


class NotReady(Unavailable):
    """The namespace's boards are being rebuilt from PostgreSQL."""


class BacklogFull(Unavailable):
    """More submissions wait for PostgreSQL than the configured backlog limit allows."""


class DatabaseError(RankerError):
    """PostgreSQL failed (outside the request path: worker, rebuild, commands)."""
