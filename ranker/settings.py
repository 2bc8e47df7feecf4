"""Settings: one object, built at the entry point from the environment and passed down.

Every variable has the prefix ``RANKER_`` and a documented default (README, "Configuration").
``REDIS_URL`` and ``DATABASE_URL`` are accepted as aliases, as most platforms set those.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ranker import boards
from ranker.boards import NAME_PATTERN
from ranker.redis_url import is_cluster
from ranker.setting_types import (
    Endpoint,
    Lowered,
    Origins,
    Percent,
    Proxies,
    RateLimit,
    RedisURL,
    split_list,
)

_NAME_RE = re.compile(NAME_PATTERN)


class Settings(BaseSettings):
    """Configuration of the service, the worker and the commands."""

    model_config = SettingsConfigDict(
        env_prefix="RANKER_", extra="ignore", frozen=True, populate_by_name=True
    )

    redis_url: RedisURL = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("RANKER_REDIS_URL", "REDIS_URL"),
        description="Redis (>= 7.0) or Valkey (>= 7.2): the live boards; "
        "`redis+cluster://host:port[,host:port...]` (or `rediss+cluster://`) for a Redis "
        "Cluster. Alias REDIS_URL.",
    )
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/ranker",
        validation_alias=AliasChoices("RANKER_DATABASE_URL", "DATABASE_URL"),
        description="PostgreSQL: the durable record. Alias DATABASE_URL.",
    )
    namespace: str = Field(
        default="default", description="Prefix of every Redis key: one deployment's boards."
    )
    game_modes: Annotated[tuple[str, ...], NoDecode] = Field(
        default=("solo", "team"),
        description="Comma-separated game modes; each has a board besides the global one.",
    )
    default_game_mode: str = Field(
        default="solo", description="The mode of a submission that names none."
    )
    score_min: int = Field(default=0, description="Lowest score one session may submit.")
    score_max: int = Field(
        default=1_000_000_000, description="Highest score one session may submit."
    )
    idempotency_ttl_s: int = Field(
        default=86_400, ge=1, description="How long a session id is remembered for retries."
    )
    max_backlog: int = Field(
        default=1_000_000,
        ge=1,
        description="Events waiting for PostgreSQL above which submit answers 503.",
    )
    redis_memory_watermark: Percent = Field(
        default=0.9,
        gt=0,
        le=1,
        description="Share of Redis's maxmemory (`0.9` or `90%`) above which submit answers "
        "503; no maxmemory on the server: none applies.",
    )
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(), description="Comma-separated API keys that may submit (and read)."
    )
    read_api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(), description="Comma-separated API keys that may only read."
    )
    admin_api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        description="Comma-separated API keys that may manage the deployment (and write, read).",
    )
    boards_file: Path | None = Field(
        default=None,
        description="A TOML file of board definitions (`[[board]]` tables) applied at start-up: "
        "missing boards are created, titles and retained periods updated; a fixed field that "
        "differs from the running board's stops the service.",
    )
    api_key_file: Path | None = Field(
        default=None,
        description="A file of API keys, one `<read|write|admin> <key>` per line.",
    )
    public_reads: bool = Field(
        default=True, description="Whether reads (top, rank, around) need no API key."
    )
    write_rate_limit: RateLimit = Field(
        default="1000/second",
        description="Submissions allowed per API key (`N/second`, `N/minute`...); empty: none.",
    )
    read_rate_limit: RateLimit = Field(
        default="",
        description="Reads allowed per API key, or per client address without one; empty: none.",
    )
    auth_failure_limit: RateLimit = Field(
        default="10/minute",
        description="Failed authentications allowed per client address and API process; past "
        "it, 429 for whatever key it sends until the window ends. Empty: none.",
    )
    address_read_limit: RateLimit = Field(
        default="200/second",
        description="Reads without an API key allowed per client address and API process; "
        "empty: none.",
    )
    total_read_limit: RateLimit = Field(
        default="5000/second",
        description="Reads allowed per API process in all (a flood from many addresses leaves "
        "room for submissions); empty: none.",
    )
    refusal_log_interval_s: float = Field(
        default=60.0,
        gt=0,
        description="Refused requests of one client address are logged once per interval, "
        "with a count.",
    )
    trusted_proxies: Proxies = Field(
        default=(),
        description="Comma-separated addresses or networks of proxies whose X-Forwarded-For is "
        "believed; empty: none is.",
    )
    cors_origins: Origins = Field(
        default=(),
        description="Comma-separated origins (scheme://host[:port]) whose pages may call the API "
        "from a browser (CORS); empty: none.",
    )
    max_header_bytes: int = Field(
        default=8_192, ge=512, description="Largest total size of a request's headers (431)."
    )
    max_url_bytes: int = Field(
        default=2_048, ge=64, description="Longest path plus query string of a request (414)."
    )
    max_body_bytes: int = Field(default=4_096, ge=64, description="Largest request body.")
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Time a connection has to send a request's headers, from connecting or from "
        "its previous answer (408, closed).",
    )
    body_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Time a request's body has once its headers are in (408, closed); also how "
        "long an answer waits for a client that does not read it (dropped).",
    )
    keep_alive_timeout_s: int = Field(
        default=5, ge=1, description="How long an idle connection stays open between requests."
    )
    max_connections: int | None = Field(
        default=None,
        ge=16,
        description="Open connections per API process; empty: the open-file limit minus 256. "
        "When full, the longest-idle connection is closed; with none idle, 503.",
    )
    max_pipelined: int = Field(
        default=16,
        ge=1,
        description="Requests one connection may send ahead of its answers (more: closed).",
    )
    coalesce_reads: bool = Field(
        default=True,
        description="Whether the read scripts that reach Redis in one event-loop turn go as one "
        "pipeline (one round trip, one connection) instead of one call each.",
    )
    top_cache: bool = Field(
        default=True,
        description="Whether each API process keeps the encoded top pages it answered (256 of "
        "each top route) and sends one again when Redis says no write since has changed it.",
    )
    top_limit_max: int = Field(
        default=100, ge=1, le=10_000, description="Largest `limit` of top (and 2x `n` of around)."
    )
    stream_interval_ms: int = Field(
        default=250,
        ge=50,
        le=10_000,
        description="How often a live feed reads the top page its streams show (one read per "
        "tick, however many streams): the least time between two events of a stream.",
    )
    stream_max_s: float = Field(
        default=300.0,
        gt=0,
        description="Longest life of a live stream (`/api/boards/{id}/stream`); the server then "
        "ends it and the browser reconnects, to this process or another.",
    )
    stream_max_clients: int = Field(
        default=5_000,
        ge=1,
        description="Live streams open at once per API process (never more than half its "
        "connection cap); past it, 503 with Retry-After.",
    )
    redis_timeout_s: float = Field(
        default=2.0, gt=0, description="Connect and reply timeout of Redis calls."
    )
    redis_max_connections: int = Field(
        default=64, ge=1, description="Redis connections per API process (on a cluster: per node)."
    )
    redis_min_replicas_ack: int = Field(
        default=0,
        ge=0,
        description="Replicas that must have an accepted submission before it is acknowledged "
        "(Redis WAIT on the node that took it; past the timeout below: 503 with Retry-After, "
        "and a retry is counted once). 0: acknowledged when the primary has it.",
    )
    redis_replica_ack_timeout_ms: int = Field(
        default=500,
        ge=1,
        description="How long submit waits for RANKER_REDIS_MIN_REPLICAS_ACK replicas.",
    )
    read_from_replicas: bool = Field(
        default=False,
        description="Cluster only: rank, top, around and lookup read from replicas (stale by "
        "the replication lag); a submission's own answer still comes from its primary.",
    )
    board_shards: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Each board's players spread over this many hash tags (by user id), so one "
        "board spans as many cluster primaries. Change it only with a rebuild (docs/design.md, "
        '"Sharded boards").',
    )
    pg_pool_max: int = Field(default=8, ge=1, description="PostgreSQL connections per process.")
    worker_batch_size: int = Field(
        default=5_000, ge=1, description="Events per write-behind transaction (at most)."
    )
    worker_concurrency: int = Field(
        default=2, ge=1, le=32, description="Write-behind transactions in flight per process."
    )
    worker_linger_ms: int = Field(
        default=50, ge=0, description="How long a caught-up worker lets its next batch gather."
    )
    worker_block_ms: int = Field(
        default=500, ge=1, description="How long the worker waits for new events per read."
    )
    claim_idle_ms: int = Field(
        default=30_000,
        ge=1,
        description="Idle time after which a crashed worker's events are taken over.",
    )
    rebuild_ttl_s: int = Field(
        default=120, ge=1, description="TTL of the rebuild flag (renewed while loading)."
    )
    rebuild_batch_size: int = Field(
        default=10_000, ge=1, description="Members per ZADD and rows per fetch in a rebuild."
    )
    retry_after_s: int = Field(
        default=2, ge=1, description="Retry-After of 503 answers (rebuilding, backlog full)."
    )
    moderation_wait_s: float = Field(
        default=10.0,
        ge=0,
        description="How long a ban, unban or void waits for the worker before it answers 202 "
        "(it then completes by itself).",
    )
    sessions_retention_months: int | None = Field(
        default=None,
        ge=1,
        description="Whole months a month's sessions outlive it before its partition may be "
        'dropped (docs/design.md, "Partitions and retention"); empty: all are kept.',
    )
    heartbeat_file: Path | None = Field(
        default=None,
        description="A file the worker touches every second (`ranker healthcheck` reads it).",
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65_535,
        description="A port of its own for `/metrics` (on the host `ranker serve` binds), so it "
        "need not be public; empty: `/metrics` is on the API's port.",
    )
    log_level: Annotated[Literal["debug", "info", "warning", "error"], Lowered] = Field(
        default="info", description="debug, info, warning or error."
    )
    log_format: Annotated[Literal["text", "json"], Lowered] = Field(
        default="text",
        description="text (one readable line per record) or json (one object per line, the "
        "same fields as keys).",
    )
    log_file: Path | None = Field(
        default=None,
        description="Also write the log to this file, rotated by size (see the two below); "
        "safe with `--workers N`. Empty: stderr only.",
    )
    log_file_max_bytes: int = Field(
        default=100 * 1024 * 1024, ge=1024, description="Size at which the log file rotates."
    )
    log_file_backups: int = Field(
        default=5, ge=1, le=1000, description="Rotated log files kept beside the current one."
    )
    access_log: bool = Field(
        default=True,
        description="One line per request (and one per worker batch, with the request ids of "
        "its sessions); false turns them off.",
    )
    otlp_endpoint: Endpoint = Field(
        default=None,
        validation_alias=AliasChoices("RANKER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
        description="An OpenTelemetry collector's OTLP/HTTP base URL (`http://collector:4318`): "
        "traces of requests, Redis calls, worker batches and rebuilds go to its `/v1/traces` "
        "(needs `ranker[otel]`; the SDK reads the other `OTEL_*` variables). Empty: no traces. "
        "Alias OTEL_EXPORTER_OTLP_ENDPOINT.",
    )
    port: int = Field(
        default=8000,
        ge=1,
        le=65_535,
        validation_alias=AliasChoices("RANKER_PORT", "PORT"),
        description="TCP port of `ranker serve` and `ranker dev` without --port. Alias PORT.",
    )

    @field_validator("game_modes", "api_keys", "read_api_keys", "admin_api_keys", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        return split_list(value)

    @field_validator("game_modes")
    @classmethod
    def _check_modes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("at least one game mode is needed")
        for mode in value:
            if not _NAME_RE.match(mode):
                raise ValueError(f"game mode {mode!r} does not match {NAME_PATTERN}")
        return value

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"namespace {value!r} does not match {NAME_PATTERN}")
        return value

    def model_post_init(self, __context: object) -> None:
        if self.default_game_mode not in self.game_modes:
            raise ValueError(
                f"RANKER_DEFAULT_GAME_MODE {self.default_game_mode!r} is not one of "
                f"RANKER_GAME_MODES {','.join(self.game_modes)}"
            )
        if self.read_from_replicas and not is_cluster(self.redis_url):
            raise ValueError(
                "RANKER_READ_FROM_REPLICAS needs a Redis Cluster (a redis+cluster:// URL)"
            )
        if self.score_min > self.score_max:
            raise ValueError("RANKER_SCORE_MIN is greater than RANKER_SCORE_MAX")
        # Sorted-set scores are doubles: integers are exact up to 2**53. Bounding one session's
        # score far below that keeps every realistic total exact.
        if max(abs(self.score_min), abs(self.score_max)) > 2**40:
            raise ValueError("score bounds must lie within +-2**40 (sorted-set scores are doubles)")

    @property
    def boards(self) -> tuple[str, ...]:
        """Every board of the namespace: ``global`` and one per game mode."""
        return boards.every_board(self.game_modes)
