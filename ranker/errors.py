"""The project's own errors. Redis and psycopg errors are translated into these at the boundary
where they are raised; the API turns each into one ``application/problem+json`` response."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ranker.models import FieldError


class RankerError(Exception):
    """Base of every error ranker raises on purpose."""

    status = 500
    title = "Internal error"
    #: The fields (body fields, query or path parameters, headers) the problem is about.
    errors: Sequence[FieldError] = ()

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


class Unauthorized(RankerError):
    """No API key, or not a known one (401: the client should authenticate)."""

    status = 401
    title = "Unauthorized"
    errors = (FieldError(field="authorization", message="expected 'Bearer <API key>'"),)

    @property
    def headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="ranker"'}


class Forbidden(RankerError):
    """A known API key whose scope does not allow the request."""

    status = 403
    title = "Forbidden"
    errors = (FieldError(field="authorization", message="this key may not make this request"),)


class TooManyRequests(RankerError):
    """The caller went over its rate limit; it may try again after ``retry_after_s``."""

    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, retry_after_s: int, limit: int, counted_by: str) -> None:
        """``counted_by``: what names the caller, "authorization" (its key) or "client" (its
        address)."""
        super().__init__(detail)
        self.retry_after_s = retry_after_s
        self.limit = limit
        self.errors = (FieldError(field=counted_by, message="this caller's budget is spent"),)

    @property
    def headers(self) -> Mapping[str, str]:
        return {
            "Retry-After": str(self.retry_after_s),
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(self.retry_after_s),
        }


class PlayerBanned(RankerError):
    """A submission for a banned player: nothing of it is stored."""

    status = 403
    title = "Player banned"
    errors = (FieldError(field="user_id", message="this player is banned"),)


class SessionConflict(RankerError):
    """A session id already accepted with other data (player, score or game mode): nothing is
    stored; a true retry repeats the session exactly and is answered as a duplicate."""

    status = 409
    title = "Conflict"
    errors = (FieldError(field="session_id", message="already used by another session"),)


class Conflict(RankerError):
    """The request contradicts what exists (a board's fixed fields, a built-in board)."""

    status = 409
    title = "Conflict"

    def __init__(self, detail: str, errors: Sequence[FieldError] = ()) -> None:
        super().__init__(detail)
        self.errors = list(errors)


class ClientGone(RankerError):
    """The client closed the connection before its request was read: not the service's error
    (499, nginx's "client closed request"; no one receives the answer)."""

    status = 499
    title = "Client closed request"


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
    """Redis did not answer (connection refused, timeout, failover in progress).

    ``detail`` is what a client is told; ``cause`` (redis-py's words, which name the server's
    address) is only for logs and the CLI's one-line reasons: ``str()`` joins the two."""

    def __init__(self, detail: str, cause: str, retry_after_s: int = 1) -> None:
        super().__init__(detail, retry_after_s)
        self.cause = cause

    def __str__(self) -> str:
        return f"{self.detail}: {self.cause}"


class RedisMemoryFull(RedisUnavailable):
    """Redis memory is above ranker's watermark of its maxmemory, or Redis refused a write at
    its maxmemory (OOM): new submissions are refused, nothing of them is stored; reads and
    retries of accepted sessions still answer. ``cause``: the reading, or Redis's words."""


class NotReady(Unavailable):
    """The namespace's boards are being rebuilt from PostgreSQL."""


class BacklogFull(Unavailable):
    """More submissions wait for PostgreSQL than the configured backlog limit allows."""


class NotReplicated(Unavailable):
    """A submission Redis took is not yet on ``RANKER_REDIS_MIN_REPLICAS_ACK`` replicas within
    the wait: not acknowledged, since a failover now could lose it. It is kept, so a retry is
    recognised by its session id and counted once (and waits for the replicas again)."""


class DatabaseError(RankerError):
    """PostgreSQL failed (outside the request path: worker, rebuild, commands)."""


class ConfigurationError(RankerError, ValueError):
    """The settings do not allow the service to start (no API key, say). A ``ValueError`` too:
    like an invalid setting, it is the configuration that is wrong."""
