"""The process's copies of top pages (``ranker.page_cache``): bounded, least recently used
dropped first, a copy sent only when the read says it is current, and every result counted."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Hashable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from ranker.page_cache import CAPACITY, PageCache


def counted(result: str) -> float:
    return REGISTRY.get_sample_value("ranker_top_cache_total", {"result": result}) or 0.0


class Reads:
    """A read of one page whose version moves when ``write`` is called (the script's part)."""

    def __init__(self) -> None:
        self.version = 1
        self.sent: list[bytes] = []

    def write(self) -> None:
        self.version += 1

    async def __call__(self, version: bytes) -> tuple[bytes, str | None]:
        self.sent.append(version)
        current = str(self.version).encode()
        return current, None if version == current else f"page {self.version}"


def encode(page: str) -> bytes:
    return page.encode()


def test_a_cache_holds_at_most_its_capacity_and_drops_the_least_recently_used() -> None:
    cache = PageCache(capacity=3)
    for key in "abc":
        cache.put(key, b"1", key.encode())
    assert cache.get("a") == (b"1", b"a")  # now the most recently used: "b" is the oldest

    cache.put("d", b"1", b"d")

    assert len(cache) == 3
    assert cache.get("b") is None
    assert [cache.get(key) for key in "acd"] == [(b"1", b"a"), (b"1", b"c"), (b"1", b"d")]


def test_a_put_replaces_the_copy_of_its_key_and_makes_it_the_most_recent() -> None:
    cache = PageCache(capacity=2)
    cache.put("a", b"1", b"old")
    cache.put("b", b"1", b"b")
    cache.put("a", b"2", b"new")  # "b" is now the oldest
    cache.put("c", b"1", b"c")

    assert (len(cache), cache.get("a"), cache.get("b")) == (2, (b"2", b"new"), None)


def test_the_default_capacity_is_bounded_and_a_capacity_below_one_is_refused() -> None:
    cache = PageCache()
    for key in range(CAPACITY + 50):
        cache.put(key, b"1", b"x")
    assert len(cache) == CAPACITY == 256
    assert cache.get(0) is None and cache.get(CAPACITY + 49) is not None
    with pytest.raises(ValueError):
        PageCache(capacity=0)


# A sequence of uses of a small cache: ("put", key) or ("get", key).
uses = st.lists(st.tuples(st.sampled_from(["put", "get"]), st.integers(0, 7)), max_size=80)


@given(uses=uses, capacity=st.integers(1, 5))
def test_the_cache_is_the_least_recently_used_policy_of_a_reference_model(
    uses: list[tuple[str, int]], capacity: int
) -> None:
    cache = PageCache(capacity=capacity)
    model: OrderedDict[Hashable, bytes] = OrderedDict()
    for step, (use, key) in enumerate(uses):
        if use == "put":
            body = str(step).encode()
            cache.put(key, b"v", body)
            model[key] = body
            model.move_to_end(key)
            if len(model) > capacity:
                model.popitem(last=False)
        else:
            found = cache.get(key)
            assert (found[1] if found else None) == model.get(key), (step, key)
            if key in model:
                model.move_to_end(key)
        assert len(cache) == len(model) <= capacity


async def test_a_copy_is_sent_only_while_the_read_says_it_is_current() -> None:
    cache, read = PageCache(), Reads()
    hits, misses = counted("hit"), counted("miss")

    first = await cache.body("top", read, encode)
    again = await cache.body("top", read, encode)
    read.write()
    changed = await cache.body("top", read, encode)
    after = await cache.body("top", read, encode)

    assert (first, again, changed, after) == (b"page 1", b"page 1", b"page 2", b"page 2")
    assert read.sent == [b"", b"1", b"1", b"2"]  # each read sends the version of its copy
    assert (counted("hit") - hits, counted("miss") - misses) == (2, 2)


async def test_an_evicted_copy_is_read_whole_again() -> None:
    cache, read = PageCache(capacity=1), Reads()
    await cache.body("a", read, encode)
    await cache.body("b", read, encode)  # "a" leaves

    assert await cache.body("a", read, encode) == b"page 1"
    assert read.sent == [b"", b"", b""]


async def test_a_copy_evicted_while_its_read_is_under_way_is_still_the_answer() -> None:
    cache = PageCache(capacity=1)
    cache.put("a", b"1", b"kept")
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(version: bytes) -> tuple[bytes, str | None]:
        entered.set()
        await release.wait()
        return b"1", None

    answer = asyncio.create_task(cache.body("a", slow, encode))
    await entered.wait()
    cache.put("b", b"1", b"other")  # evicts "a" meanwhile
    release.set()

    assert await answer == b"kept"


async def test_a_failed_read_keeps_nothing_and_raises_as_it_is() -> None:
    cache = PageCache()

    async def failing(version: bytes) -> tuple[bytes, str | None]:
        raise ConnectionError("Redis away")

    with pytest.raises(ConnectionError):
        await cache.body("a", failing, encode)
    assert len(cache) == 0


async def test_a_disabled_cache_keeps_nothing_counts_nothing_and_sends_no_version() -> None:
    cache, read = PageCache(enabled=False), Reads()
    hits, misses = counted("hit"), counted("miss")

    bodies = [await cache.body("top", read, encode) for _ in range(3)]

    assert bodies == [b"page 1"] * 3
    assert read.sent == [b""] * 3
    assert (len(cache), counted("hit") - hits, counted("miss") - misses) == (0, 0, 0)


async def test_unchanged_to_a_read_of_no_copy_is_an_error_not_an_empty_answer() -> None:
    async def confused(version: bytes) -> tuple[bytes, str | None]:
        return b"1", None

    with pytest.raises(RuntimeError):
        await PageCache().body("a", confused, encode)
