from __future__ import annotations

import pytest
from pydantic import ValidationError

from ranker.settings import Settings


def test_defaults_describe_a_local_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANKER_REDIS_URL", "REDIS_URL", "RANKER_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()

    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.boards == ("global", "mode:solo", "mode:team")
    assert settings.idempotency_ttl_s == 86_400


def test_platform_aliases_and_prefixed_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANKER_REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("RANKER_DATABASE_URL", "postgresql://db/ranker")
    monkeypatch.setenv("RANKER_GAME_MODES", "solo, duo ,squad")
    monkeypatch.setenv("RANKER_DEFAULT_GAME_MODE", "duo")

    settings = Settings()

    assert settings.redis_url == "redis://cache:6379/2"
    assert settings.database_url == "postgresql://db/ranker"
    assert settings.game_modes == ("solo", "duo", "squad")


@pytest.mark.parametrize(("text", "fraction"), [("0.85", 0.85), ("85%", 0.85), (" 100% ", 1.0)])
def test_the_memory_watermark_is_a_fraction_or_a_percentage(
    monkeypatch: pytest.MonkeyPatch, text: str, fraction: float
) -> None:
    monkeypatch.setenv("RANKER_REDIS_MEMORY_WATERMARK", text)

    assert Settings().redis_memory_watermark == pytest.approx(fraction)


@pytest.mark.parametrize(
    "env",
    [
        {"RANKER_GAME_MODES": "solo,Team!"},
        {"RANKER_GAME_MODES": "solo", "RANKER_DEFAULT_GAME_MODE": "team"},
        {"RANKER_NAMESPACE": "a:b"},
        {"RANKER_SCORE_MIN": "10", "RANKER_SCORE_MAX": "5"},
        {"RANKER_SCORE_MAX": str(2**50)},
        {"RANKER_IDEMPOTENCY_TTL_S": "0"},
        {"RANKER_SESSIONS_RETENTION_MONTHS": "0"},
        {"RANKER_SESSIONS_RETENTION_MONTHS": "-3"},
        {"RANKER_REDIS_MEMORY_WATERMARK": "0"},
        {"RANKER_REDIS_MEMORY_WATERMARK": "120%"},
        {"RANKER_REDIS_MEMORY_WATERMARK": "ninety%"},
    ],
)
def test_invalid_settings_are_refused(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises((ValidationError, ValueError)):
        Settings()


def test_the_readme_documents_every_setting_with_its_default() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, tuple):
            shown = ",".join(default)
        else:
            shown = "" if default is None else str(default)
        cell = f"`{shown}`" if shown else "(none)"
        assert f"| `RANKER_{name.upper()}` | {cell} |" in readme, name


def test_sessions_are_kept_forever_unless_a_retention_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RANKER_SESSIONS_RETENTION_MONTHS", raising=False)
    assert Settings().sessions_retention_months is None

    monkeypatch.setenv("RANKER_SESSIONS_RETENTION_MONTHS", "6")
    assert Settings().sessions_retention_months == 6
