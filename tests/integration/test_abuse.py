"""What one client address may cost: wrong keys are limited (429 whatever key follows), public
reads per address and all reads per process are limited, and refusals are logged once per
address per interval with a count."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from ranker.api.app import create_app
from ranker.settings import Settings
from tests.fixtures.ranker import READ_KEY, auth_headers, wait_for

SUBMIT = "/api/leaderboard/submit"
TOP = "/api/leaderboard/top"


@contextlib.asynccontextmanager
async def clients(settings: Settings, *addresses: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per address on one app run in process (with its lifespan)."""
    app = create_app(settings)
    async with app.router.lifespan_context(app), contextlib.AsyncExitStack() as stack:
        opened = []
        for address in addresses:
            transport = httpx.ASGITransport(app=app, client=(address, 40_000))
            http = httpx.AsyncClient(transport=transport, base_url="http://ranker")
            opened.append(await stack.enter_async_context(http))
        yield opened


def wrong_key() -> dict[str, str]:
    return {"Authorization": "Bearer not-a-key-of-this-service"}


def submission(n: int) -> dict[str, object]:
    return {"user_id": 7, "score": 1, "session_id": f"abuse-{n}"}


def assert_429(answer: httpx.Response, field: str) -> None:
    assert answer.status_code == 429, answer.text
    assert int(answer.headers["retry-after"]) >= 1
    assert [error["field"] for error in answer.json()["errors"]] == [field]


async def test_an_address_that_keeps_sending_wrong_keys_gets_429_even_with_a_right_one(
    make_settings: Callable[..., Settings], loaded: None
) -> None:
    settings = make_settings(auth_failure_limit="5/minute")
    async with clients(settings, "203.0.113.5", "203.0.113.6") as (guesser, other):
        for n in range(5):
            assert (
                await guesser.post(SUBMIT, json=submission(n), headers=wrong_key())
            ).status_code == 401
        assert_429(await guesser.post(SUBMIT, json=submission(5), headers=wrong_key()), "client")
        # A right guess does not tell itself apart while the budget is spent.
        right = await guesser.post(SUBMIT, json=submission(6), headers=auth_headers())
        assert_429(right, "client")
        # Another address is not affected, and nothing of the refused submissions was stored.
        assert (
            await other.post(SUBMIT, json=submission(7), headers=auth_headers())
        ).status_code == 200
        assert (await other.get("/api/leaderboard/rank/7")).json()["total_score"] == 1


async def test_refusals_are_logged_once_per_address_per_interval_with_a_count(
    make_settings: Callable[..., Settings], loaded: None, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(refusal_log_interval_s=0.5)
    caplog.set_level(logging.INFO, logger="ranker.api")

    def lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("refused")]

    async with clients(settings, "203.0.113.7") as (guesser,):
        for n in range(200):
            await guesser.post(SUBMIT, json=submission(n), headers=wrong_key())
        assert len(lines()) == 1, lines()

        async def second_line() -> bool:
            await guesser.post(SUBMIT, json=submission(0), headers=wrong_key())
            return len(lines()) == 2

        await wait_for(second_line, 5, "the next interval's line")
    first, second = lines()
    assert "203.0.113.7" in first and "not valid" in first
    assert "more refusals in the last 0.5 s" in second
    assert int(second.split("(and ")[1].split()[0]) >= 199


async def test_public_reads_are_limited_per_address_and_all_reads_per_process(
    make_settings: Callable[..., Settings], loaded: None
) -> None:
    settings = make_settings(address_read_limit="5/minute", total_read_limit="12/minute")
    async with clients(settings, "198.51.100.1", "198.51.100.2") as (one, two):
        for _ in range(5):
            assert (await one.get(TOP)).status_code == 200
        assert_429(await one.get(TOP), "client")
        # Another address has its own budget; a read key is counted by its key, not its address.
        for _ in range(5):
            assert (await two.get(TOP)).status_code == 200
        keyed = auth_headers(READ_KEY)
        assert (await one.get(TOP, headers=keyed)).status_code == 200
        # 12 reads answered in all (5 + 5 + 1) plus this one: the process's budget is spent.
        assert (await two.get(TOP, headers=keyed)).status_code == 200
        refused = await two.get(TOP, headers=keyed)
        assert_429(refused, "client")
        assert "all reads of this server" in refused.json()["detail"]
