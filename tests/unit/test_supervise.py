"""The background jobs' supervisor: a server away is one warning line and a restart; a bug is
logged with its traceback and restarted too."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis import exceptions as redis_errors

from persistence import service


async def run_failing_once(error: Exception, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(service, "RESTART_DELAY_S", 0.01)
    stop = asyncio.Event()
    calls = 0

    async def job() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise error
        stop.set()

    await asyncio.wait_for(service.supervise(job, stop), 5)
    return calls


async def test_a_redis_still_loading_is_one_warning_line_and_a_restart(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ranker")
    loading = redis_errors.BusyLoadingError("Redis is loading the dataset in memory")
    assert await run_failing_once(loading, monkeypatch) == 2
    [record] = [r for r in caplog.records if "background job" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert "Redis is loading the dataset in memory" in record.getMessage()


async def test_a_bug_is_logged_with_its_traceback_and_restarted(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ranker")
    assert await run_failing_once(ValueError("a bug"), monkeypatch) == 2
    [record] = [r for r in caplog.records if "background job" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
