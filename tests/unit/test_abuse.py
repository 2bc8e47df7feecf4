"""The per-address budgets and the sampled refusal log (``ranker/api/abuse.py``)."""

from __future__ import annotations

import logging

import pytest

from ranker.api import abuse
from ranker.api.abuse import AddressLimits, SampledLog, Windows
from ranker.api.ratelimit import budgets
from ranker.errors import TooManyRequests
from ranker.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(abuse.time, "monotonic", fake)
    return fake


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def test_one_line_per_address_per_interval_then_the_count(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ranker.api")
    sampled = SampledLog(60)
    for _ in range(100):
        sampled.refused("192.0.2.1", "refused from 192.0.2.1")
    sampled.refused("192.0.2.2", "refused from 192.0.2.2")
    assert lines(caplog) == ["refused from 192.0.2.1", "refused from 192.0.2.2"]

    clock.now += 59.9
    sampled.refused("192.0.2.1", "refused from 192.0.2.1")
    assert len(lines(caplog)) == 2
    clock.now += 0.1
    sampled.refused("192.0.2.1", "refused from 192.0.2.1")
    assert lines(caplog)[-1] == "refused from 192.0.2.1 (and 100 more refusals in the last 60 s)"


def test_the_addresses_remembered_are_bounded(
    clock: Clock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ranker.api")
    monkeypatch.setattr(SampledLog, "MAX_ADDRESSES", 10)
    sampled = SampledLog(60)
    for n in range(1_000):  # a flood from rotating addresses
        sampled.refused(f"2001:db8::{n:x}", "refused")
    assert len(sampled._since) <= 10
    assert len(lines(caplog)) == 1_000  # each new address still gets its line


def settings(**limits: str) -> Settings:
    blank = {"auth_failure_limit": "", "address_read_limit": "", "total_read_limit": ""}
    return Settings(**(blank | limits))  # type: ignore[arg-type]


def test_an_address_past_its_failed_authentications_is_refused_before_its_key_is_read() -> None:
    limits = AddressLimits(settings(auth_failure_limit="3/minute"))
    for _ in range(3):
        limits.check_guessing("192.0.2.9")
        limits.failed_authentication("192.0.2.9")
    with pytest.raises(TooManyRequests) as refused:
        limits.check_guessing("192.0.2.9")
    assert "3 failed authentications per 1 minute" in refused.value.detail
    assert refused.value.errors[0].field == "client"
    limits.check_guessing("192.0.2.10")  # another address: its own budget


def test_public_reads_count_per_address_and_every_read_in_total() -> None:
    limits = AddressLimits(settings(address_read_limit="2/minute", total_read_limit="5/minute"))
    limits.spend_read("192.0.2.1")
    limits.spend_read("192.0.2.1")
    with pytest.raises(TooManyRequests, match="of this address"):
        limits.spend_read("192.0.2.1")
    limits.spend_read("192.0.2.2")
    limits.spend_read(None)  # a read with a key: not counted by address
    limits.spend_read(None)
    with pytest.raises(TooManyRequests, match="all reads of this server"):
        limits.spend_read(None)


def test_no_budget_means_no_limit() -> None:
    limits = AddressLimits(settings())
    for _ in range(1_000):
        limits.check_guessing("192.0.2.1")
        limits.failed_authentication("192.0.2.1")
        limits.spend_read("192.0.2.1")


def test_a_window_opens_at_its_first_request_and_ends_after_its_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1_000.0]
    monkeypatch.setattr("ranker.api.abuse.time.monotonic", lambda: clock[0])
    windows = Windows()
    item = budgets("2/minute")[0]
    key = ("address", 0, "192.0.2.1")
    clock[0] += 30  # no window is aligned to the clock: this one opens now
    assert windows.hit(item, key) and windows.hit(item, key)
    assert not windows.hit(item, key)  # spent, and a refusal counts nothing
    assert windows.spent(item, key)
    clock[0] += 59.9
    assert windows.spent(item, key)
    clock[0] += 0.1  # 60 s after its first request
    assert not windows.spent(item, key)
    assert windows.hit(item, key)


def test_the_counts_held_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Windows, "MAX_COUNTS", 100)
    windows = Windows()
    item = budgets("1/minute")[0]
    for n in range(1_000):
        assert windows.hit(item, ("address", 0, f"10.0.{n // 256}.{n % 256}"))
        assert len(windows._counts) <= 100
