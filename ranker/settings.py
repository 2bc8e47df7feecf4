"""Settings: one object, built at the entry point from the environment and passed down.

Every variable has the prefix ``RANKER_`` and a documented default (README, "Configuration").
``REDIS_URL`` and ``DATABASE_URL`` are accepted as aliases, as most platforms set those.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

#: What a game mode, a namespace or a board suffix may look like: they become parts of Redis keys.
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,31}$"
_NAME_RE = re.compile(NAME_PATTERN)


class Settings(BaseSettings):
    """Configuration of the service, the worker and the commands."""

    model_config = SettingsConfigDict(
        env_prefix="RANKER_", extra="ignore", frozen=True, populate_by_name=True
    )

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("RANKER_REDIS_URL", "REDIS_URL"),
    )
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/ranker",
        validation_alias=AliasChoices("RANKER_DATABASE_URL", "DATABASE_URL"),
    )
    namespace: str = "default"
    game_modes: Annotated[tuple[str, ...], NoDecode] = ("solo", "team")
    default_game_mode: str = "solo"
    score_min: int = 0
    score_max: int = 1_000_000_000
    idempotency_ttl_s: int = Field(default=86_400, ge=1)
    max_backlog: int = Field(default=1_000_000, ge=1)
    max_body_bytes: int = Field(default=4_096, ge=64)
    top_limit_max: int = Field(default=100, ge=1, le=10_000)
    redis_timeout_s: float = Field(default=2.0, gt=0)
    redis_max_connections: int = Field(default=64, ge=1)
    pg_pool_max: int = Field(default=8, ge=1)
    worker_batch_size: int = Field(default=1_000, ge=1)
    worker_block_ms: int = Field(default=500, ge=1)
    claim_idle_ms: int = Field(default=30_000, ge=1)
    rebuild_ttl_s: int = Field(default=120, ge=1)
    rebuild_batch_size: int = Field(default=10_000, ge=1)
    retry_after_s: int = Field(default=2, ge=1)
    log_level: str = "info"

    @field_validator("game_modes", mode="before")
    @classmethod
    def _split_modes(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

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
        if self.score_min > self.score_max:
            raise ValueError("RANKER_SCORE_MIN is greater than RANKER_SCORE_MAX")
        # Sorted-set scores are doubles: integers are exact up to 2**53. Bounding one session's
        # score far below that keeps every realistic total exact.
        if max(abs(self.score_min), abs(self.score_max)) > 2**40:
            raise ValueError("score bounds must lie within +-2**40 (sorted-set scores are doubles)")

    @property
    def boards(self) -> tuple[str, ...]:
        """Every board of the namespace: ``global`` and one per game mode."""
        return ("global", *(f"mode:{mode}" for mode in self.game_modes))
