"""The API process's copies of top pages (``ranker.page_cache``, docs/design.md "Data flow",
Reads) on the real servers: a copy is never sent after a write that changed its page was
answered. Every page an API process with ``RANKER_TOP_CACHE`` on answers is compared with the
same read by a process with it off (status, headers and bytes), with the bytes today's
encoders write (``EntriesJSON`` of ``Ranking.top``, ``JSON`` of ``Pages.top``) and with the
board as Redis holds it (every member by score, ranks counted here): after submissions
interleaved with reads (hypothesis: players with ties, names, retries, both routes, several
limits, modes and orders, a cursor), and after each other kind of writer: a ban, a void and an
unban, a name set alone, a rebuild's swap (also after a wipe, when the counter comes round to a
copy's number again), a board purged and made again, a period gone by its TTL or deleted. The
hit counter must move exactly as expected, so the tests fail if copies were never sent."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.rebuild import Rebuild
from persistence.verify import wait_drained
from persistence.worker import Worker
from ranker.api.problems import JSON, EntriesJSON
from ranker.definitions import Order
from ranker.keys import Keys
from ranker.pages import Pages, encode_cursor
from ranker.placements import slot_of
from ranker.ranking import Ranking
from ranker.settings import Settings
from tests.fixtures.ranker import ADMIN_KEY, api_process, auth_headers, wait_for, worker_running

ADMIN = auth_headers(ADMIN_KEY)
SUBMIT = "/api/leaderboard/submit"
LEGACY = "/api/leaderboard/top"
#: Beside the built-in boards (sum, desc): one of the other order and operator.
LOW = {"title": "low", "operator": "best", "order": "asc", "reset": "never"}
#: Few distinct scores: the boards are full of ties.
SCORES = (0, 1, 2, 3, 5, 8)
NAMES = ("Ann", "Bo", "Émile")


@dataclass(frozen=True)
class Page:
    """One top read: the route's board (``None``: the legacy route), its query, and where
    Redis holds it."""

    board: str | None
    limit: int
    mode: str | None = None
    offset: int = 0
    order: Order = "desc"

    @property
    def path(self) -> str:
        return LEGACY if self.board is None else f"/api/boards/{self.board}/top"

    @property
    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": self.limit}
        if self.mode is not None:
            params["mode"] = self.mode
        if self.offset:
            params["cursor"] = encode_cursor(str(self.board), "all", self.offset)
        return params

    @property
    def slot(self) -> str:
        if self.board is None:
            return slot_of("global" if self.mode is None else f"mode-{self.mode}", "all")
        return slot_of(self.board, "all")


#: Both routes, several limits, modes, orders and an offset (a cursor past the end included).
PAGES = [
    Page(None, 1),
    Page(None, 10),
    Page(None, 4, mode="team"),
    Page("global", 3),
    Page("global", 3, offset=3),
    Page("low", 5, order="asc"),
    Page("mode-solo", 2),
]


class Clock:
    """An API process's wall clock, set by the test."""

    def __init__(self, text: str) -> None:
        self.at(text)

    def at(self, text: str) -> None:
        self.ms = int(datetime.fromisoformat(text).astimezone(UTC).timestamp() * 1000)

    def __call__(self) -> int:
        return self.ms


def counted() -> tuple[float, float]:
    """The cache's hits and misses so far (every API process of the tests shares the registry;
    one with the cache off counts nothing)."""
    found = [
        REGISTRY.get_sample_value("ranker_top_cache_total", {"result": result}) or 0.0
        for result in ("hit", "miss")
    ]
    return found[0], found[1]


@dataclass
class Readers:
    """The same namespace read by an API process with copies, one without, and today's
    encoders in process."""

    cached: httpx.AsyncClient
    uncached: httpx.AsyncClient
    redis: Redis
    settings: Settings

    def __post_init__(self) -> None:
        self.keys = Keys(self.settings.namespace)
        self.ranking = Ranking(self.redis, self.settings)
        self.pages = Pages(self.redis, self.settings)

    async def todays(self, page: Page) -> bytes:
        """The body the routes wrote before copies existed: the models, then their encoder."""
        if page.board is None:
            return EntriesJSON(await self.ranking.top(page.limit, page.mode)).body
        cursor = page.params.get("cursor")
        key = self.keys.board(page.slot)
        found = await self.pages.top(key, page.board, "all", page.order, page.limit, cursor)
        return JSON(found).body

    async def in_redis(self, page: Page) -> list[tuple[int, int, int, str | None]]:
        """(rank, user, score, name) of the page, from every member of its board as Redis
        holds it, ranked here: 1 + the members strictly better."""
        key = self.keys.board(page.slot)
        desc = page.order == "desc"
        members = await (self.redis.zrevrange if desc else self.redis.zrange)(
            key, 0, -1, withscores=True
        )
        scores = [int(score) for _, score in members]
        names = await self.redis.hmget(self.keys.names, [m for m, _ in members]) if members else []
        rows = [
            (
                1 + sum(1 for s in scores if (s > int(score) if desc else s < int(score))),
                int(member),
                int(score),
                None if name is None else name.decode(),
            )
            for (member, score), name in zip(members, names, strict=True)
        ]
        return rows[page.offset : page.offset + page.limit]

    async def check(self, page: Page) -> bytes:
        """Read ``page`` from both processes: the same answer, today's bytes, Redis's page."""
        mine = await self.cached.get(page.path, params=page.params)
        theirs = await self.uncached.get(page.path, params=page.params)
        assert mine.status_code == theirs.status_code == 200, (page, mine.text)
        assert mine.content == theirs.content == await self.todays(page), page
        for header in ("content-type", "content-length"):
            assert mine.headers[header] == theirs.headers[header], (page, header)
        body = mine.json()
        entries = body if page.board is None else body["entries"]
        score = "total_score" if page.board is None else "score"
        shown = [(e["rank"], e["user_id"], e[score], e["username"]) for e in entries]
        assert shown == await self.in_redis(page), page
        return mine.content

    async def check_all(self, changed: bool) -> None:
        """Every page checked, each read from its copy exactly when it should be: never when
        a write was answered since the last read (``changed``: Redis says so) or when its
        board has no key (nothing to keep: a page of no board is read whole), else always."""
        for page in PAGES:
            hit = not changed and bool(await self.redis.exists(self.keys.board(page.slot)))
            hits, misses = counted()
            await self.check(page)
            assert counted() == (hits + hit, misses + (not hit)), (page, changed)

    async def warm(self) -> None:
        """Every page read (checked) until its next read is the copy."""
        for page in PAGES:
            await self.check(page)
        await self.check_all(changed=False)


@contextlib.asynccontextmanager
async def readers(
    settings: Settings, make_settings: Callable[..., Settings], redis: Redis
) -> AsyncIterator[Readers]:
    """``Readers`` of the namespace of ``settings``, both processes started here."""
    uncached_settings = make_settings(namespace=settings.namespace, top_cache=False)
    async with api_process(settings) as cached, api_process(uncached_settings) as uncached:
        yield Readers(cached, uncached, redis, settings)


async def define_low(http: httpx.AsyncClient) -> None:
    put = await http.put("/api/boards/low", json=LOW, headers=ADMIN)
    assert put.status_code == 201, put.text


async def submit(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await http.post(SUBMIT, json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def settle(settings: Settings, redis: Redis, pool: AsyncConnectionPool) -> None:
    """Everything accepted so far persisted."""
    await wait_drained(redis, Keys(settings.namespace), 30)
    await Worker(settings, redis, pool).drain()


# A step: a submission (player, score, mode, a name or none), a retry of the last one, a name
# set alone, or nothing (the pages are read again).
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("submit"),
            st.integers(1, 12),
            st.sampled_from(SCORES),
            st.sampled_from(["solo", "team"]),
            st.one_of(st.none(), st.sampled_from(NAMES)),
        ),
        st.tuples(st.just("retry")),
        st.tuples(st.just("name"), st.integers(1, 12), st.sampled_from(NAMES)),
        st.tuples(st.just("read")),
    ),
    min_size=1,
    max_size=20,
)


async def take(http: httpx.AsyncClient, step: tuple[Any, ...], last: dict[str, Any]) -> bool:
    """Make ``step`` (``last``: the body of the last submission, which a retry repeats);
    whether it changed what a page may show (a write was accepted)."""
    if step[0] == "submit":
        _, user, score, mode, name = step
        body = {"user_id": user, "score": score, "game_mode": mode, "session_id": uuid.uuid4().hex}
        if name is not None:
            body["username"] = name
        assert (await submit(http, **body))["duplicate"] is False
        last.clear()
        last.update(body)
        return True
    if step[0] == "retry" and last:
        assert (await submit(http, **last))["duplicate"] is True
        return False
    if step[0] == "name":
        put = await http.put(f"/api/players/{step[1]}", json={"username": step[2]})
        assert put.status_code == 200, put.text
        return True
    return False


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps)
async def test_a_cached_top_page_is_never_served_after_a_submission_that_changed_it(
    steps: list[tuple[Any, ...]],
    make_settings: Callable[..., Settings],
    redis: Redis,
    pool: AsyncConnectionPool,
) -> None:
    # A namespace of each example's own: examples share the test's fixtures.
    settings = make_settings(namespace=f"h{uuid.uuid4().hex[:10]}")
    await Rebuild(settings, redis, pool).run()
    try:
        async with readers(settings, make_settings, redis) as read:
            await define_low(read.cached)
            await read.check_all(changed=True)  # nothing kept yet
            last: dict[str, Any] = {}
            for step in steps:
                changed = await take(read.cached, step, last)
                # The first read after a write is never the copy: Redis says it changed.
                await read.check_all(changed)
                await read.check_all(changed=False)  # now it is
    finally:
        keys = [key async for key in redis.scan_iter(f"ranker:{{{settings.namespace}}}:*")]
        if keys:
            await redis.delete(*keys)


async def test_a_copy_is_sent_only_by_a_process_with_the_cache_and_is_the_same_bytes(
    make_settings: Callable[..., Settings], settings: Settings, redis: Redis, loaded: None
) -> None:
    async with readers(settings, make_settings, redis) as read:
        await define_low(read.cached)
        for user, score, mode in [(1, 5, "solo"), (2, 5, "team"), (3, 8, "team"), (4, 0, "solo")]:
            await submit(
                read.cached, user_id=user, score=score, game_mode=mode, username=f"p{user}"
            )
        first = [await read.check(page) for page in PAGES]  # every page's board has a key
        hits, misses = counted()
        again = [(await read.cached.get(page.path, params=page.params)).content for page in PAGES]
        assert counted() == (hits + len(PAGES), misses)
        assert again == first
        for page in PAGES:  # the process without copies counts nothing
            await read.uncached.get(page.path, params=page.params)
        assert counted() == (hits + len(PAGES), misses)


async def test_a_ban_a_void_and_an_unban_each_change_the_pages_at_once(
    make_settings: Callable[..., Settings],
    settings: Settings,
    redis: Redis,
    pool: AsyncConnectionPool,
    loaded: None,
) -> None:
    async with (
        readers(settings, make_settings, redis) as read,
        worker_running(settings, redis, pool),
    ):
        await define_low(read.cached)
        for user, score, sid in [(1, 9, "a"), (1, 4, "b"), (2, 8, "c"), (3, 8, "d"), (4, 1, "e")]:
            await submit(read.cached, user_id=user, score=score, session_id=sid)
        await settle(settings, redis, pool)
        actions = [
            ("POST", "/api/players/2/ban", lambda entries: 2 not in entries),
            ("DELETE", "/api/sessions/a", lambda entries: entries.get(1) == 4),
            ("POST", "/api/players/2/unban", lambda entries: entries.get(2) == 8),
        ]
        for method, url, shows in actions:
            await read.warm()
            answer = await read.cached.request(method, url, json={"reason": "x"}, headers=ADMIN)
            assert answer.status_code == 200 and answer.json()["completed"], answer.text
            await read.check_all(changed=True)
            top = (await read.cached.get(LEGACY, params={"limit": 10})).json()
            assert shows({e["user_id"]: e["total_score"] for e in top}), (url, top)


async def test_a_name_set_alone_changes_every_page_that_shows_the_player(
    make_settings: Callable[..., Settings], settings: Settings, redis: Redis, loaded: None
) -> None:
    async with readers(settings, make_settings, redis) as read:
        await define_low(read.cached)
        for user in (1, 2, 3):
            await submit(read.cached, user_id=user, score=user, game_mode="team")
        await read.warm()

        put = await read.cached.put("/api/players/3", json={"username": "Zoë"})

        assert put.status_code == 200, put.text
        await read.check_all(changed=True)
        top = (await read.cached.get(LEGACY, params={"limit": 1})).json()
        assert top[0]["username"] == "Zoë"


async def test_a_rebuild_swap_changes_the_pages_even_when_the_version_comes_back(
    make_settings: Callable[..., Settings],
    settings: Settings,
    redis: Redis,
    pool: AsyncConnectionPool,
    worker: Worker,
    loaded: None,
) -> None:
    keys = Keys(settings.namespace)
    async with readers(settings, make_settings, redis) as read:
        await define_low(read.cached)
        for user, score in [(1, 5), (2, 3), (3, 3)]:
            await submit(read.cached, user_id=user, score=score, username=f"p{user}")
        await worker.drain()
        # PostgreSQL changed behind Redis's back: a rebuild makes Redis say what it holds.
        await read.warm()
        async with pool.connection() as conn:
            await conn.execute("UPDATE board_scores SET score = score + 10 WHERE user_id = 3")
            await conn.execute("UPDATE players SET username = 'renamed' WHERE user_id = 2")
        await Rebuild(settings, redis, pool).run()
        await read.check_all(changed=True)
        top = (await read.cached.get(LEGACY, params={"limit": 3})).json()
        assert [(e["user_id"], e["username"]) for e in top][:2] == [(3, "p3"), (1, "p1")]

        # Wiped, and its version brought back to the one of a copy (a Redis that came back
        # from an old file): it names another page, for it holds the marker of the rebuild
        # that loaded it.
        await read.warm()
        kept = await redis.get(keys.pages_version)
        async for key in redis.scan_iter(match=f"ranker:{{{settings.namespace}}}:*"):
            await redis.delete(key)
        assert (await read.cached.get(LEGACY)).status_code == 503
        async with pool.connection() as conn:
            await conn.execute("UPDATE board_scores SET score = score + 100 WHERE user_id = 2")
        await Rebuild(settings, redis, pool).run()
        await redis.set(keys.pages_version, kept)
        await read.check_all(changed=True)
        top = (await read.cached.get(LEGACY, params={"limit": 1})).json()
        assert top[0]["user_id"] == 2


async def test_a_copy_of_a_write_redis_lost_is_never_served_after_the_next_write(
    make_settings: Callable[..., Settings], settings: Settings, redis: Redis, loaded: None
) -> None:
    keys = Keys(settings.namespace)
    async with readers(settings, make_settings, redis) as read:
        await define_low(read.cached)
        for user, score in [(1, 5), (2, 3)]:
            await submit(read.cached, user_id=user, score=score, username=f"p{user}")
        before = await redis.get(keys.pages_version)
        await submit(read.cached, user_id=7, score=50, username="p7")
        await read.warm()  # copies of pages that show player 7
        # Redis loses that write (a restart from a file older than it, a failover to a
        # replica that had not received it): its boards, its name and its version are gone.
        async for key in redis.scan_iter(match=f"ranker:{{{settings.namespace}}}:board:*"):
            if await redis.type(key) == b"zset":
                await redis.zrem(key, "7")
        await redis.hdel(keys.names, "7")
        await redis.set(keys.pages_version, before)
        # The next write, before any read: a counter would come back to the copies' number
        # (they would be served, showing player 7); the clock does not.
        await submit(read.cached, user_id=3, score=1, username="p3")
        await read.check_all(changed=True)
        top = (await read.cached.get(LEGACY, params={"limit": 10})).json()
        assert 7 not in {entry["user_id"] for entry in top}


async def test_a_board_purged_and_made_again_never_shows_its_old_page(
    make_settings: Callable[..., Settings],
    settings: Settings,
    redis: Redis,
    worker: Worker,
    loaded: None,
) -> None:
    async with readers(settings, make_settings, redis) as read:
        await define_low(read.cached)
        for user, score in [(1, 5), (2, 1)]:
            await submit(read.cached, user_id=user, score=score)
        await read.warm()

        purged = await read.cached.delete(
            "/api/boards/low", params={"purge": "true"}, headers=ADMIN
        )
        assert purged.status_code == 200, purged.text
        assert (await read.cached.get("/api/boards/low/top")).status_code == 404
        await worker.drain()  # the purge persisted: the id can be used again
        await define_low(read.cached)
        # The other process sees the board again within its catalog's refresh (0.5 s).
        await wait_for(lambda: answered(read.uncached, "/api/boards/low/top"), 10, "the board")

        await read.check_all(changed=True)
        page = (await read.cached.get("/api/boards/low/top")).json()
        assert (page["members"], page["entries"]) == (0, [])


async def test_a_period_gone_by_its_ttl_or_deleted_is_never_sent_from_a_copy(
    make_settings: Callable[..., Settings], settings: Settings, redis: Redis, loaded: None
) -> None:
    keys = Keys(settings.namespace)
    daily = {"title": "d", "operator": "best", "order": "desc", "reset": "daily"}
    async with readers(settings, make_settings, redis) as read:
        put = await read.cached.put("/api/boards/d", json=daily, headers=ADMIN)
        assert put.status_code == 201, put.text
        await define_low(read.cached)
        for user, score in [(1, 5), (2, 7)]:
            await submit(read.cached, user_id=user, score=score)
        today = (await read.cached.get("/api/boards/d/top")).json()["period"]
        await read.warm()
        hits, misses = counted()
        first = await read.cached.get("/api/boards/d/top")
        assert counted() == (hits + 1, misses) and first.json()["members"] == 2

        # Nothing bumps the version when a key expires: the script sees the key gone.
        await redis.pexpire(keys.board(f"d/{today}"), 1)

        async def expired() -> bool:
            return not await redis.exists(keys.board(f"d/{today}"))

        await wait_for(expired, 10, "the period's key to expire")
        await redis.delete(keys.board("global"))  # as if it had expired too
        for _ in range(2):  # never the copy while its key is gone (the others' still are)
            hits, misses = counted()
            answers = [await http.get("/api/boards/d/top") for http in (read.cached, read.uncached)]
            assert answers[0].content == answers[1].content
            assert (answers[0].json()["members"], answers[0].json()["entries"]) == (0, [])
            assert counted() == (hits, misses + 1)
            await read.check_all(changed=False)
        assert (await read.cached.get(LEGACY)).json() == []


async def test_a_past_period_reloaded_from_postgresql_is_never_sent_from_an_older_copy(
    make_settings: Callable[..., Settings],
    settings: Settings,
    redis: Redis,
    pool: AsyncConnectionPool,
    worker: Worker,
    loaded: None,
) -> None:
    clock = Clock("2026-12-10T08:00:00+00:00")
    daily = {"operator": "best", "order": "desc", "reset": "daily", "retain_periods": 1}
    uncached_settings = make_settings(top_cache=False)
    async with (
        api_process(settings, clock) as cached,
        api_process(uncached_settings, clock) as uncached,
    ):
        put = await cached.put("/api/boards/daily", json=daily, headers=ADMIN)
        assert put.status_code == 201, put.text
        for user, score in [(1, 30), (2, 10)]:
            await submit(cached, user_id=user, score=score)
        await worker.drain()
        clock.at("2026-12-12T08:00:00+00:00")  # 10 December left Redis: read from PostgreSQL
        path, params = "/api/boards/daily/top", {"period": "2026-12-10"}

        async def both() -> bytes:
            mine, theirs = [await http.get(path, params=params) for http in (cached, uncached)]
            assert mine.status_code == theirs.status_code == 200, mine.text
            assert mine.content == theirs.content
            return mine.content

        first = await both()
        hits, misses = counted()
        assert await both() == first and counted() == (hits + 1, misses)
        # The copy in Redis leaves (its TTL), and PostgreSQL now holds more of the period (a
        # session the first load came too early for): the reload must be what is sent.
        await redis.delete(Keys(settings.namespace).archive("daily/2026-12-10"))
        async with pool.connection() as conn:
            await conn.execute(
                "UPDATE board_scores SET score = 99 WHERE board = 'daily' AND user_id = 2"
            )
        hits, misses = counted()
        reloaded = await both()
        assert counted() == (hits, misses + 1)
        assert [e["user_id"] for e in json.loads(reloaded)["entries"]] == [2, 1]


async def test_reads_refuse_while_the_namespace_is_not_loaded_whatever_the_copies(
    make_settings: Callable[..., Settings], settings: Settings, redis: Redis, loaded: None
) -> None:
    async with readers(settings, make_settings, redis) as read:
        await define_low(read.cached)
        await submit(read.cached, user_id=1, score=5)
        await read.warm()
        bad = {"cursor": "not-a-cursor"}
        wrong = [
            await http.get("/api/boards/low/top", params=bad)
            for http in (read.cached, read.uncached)
        ]

        await redis.delete(Keys(settings.namespace).marker)  # as when Redis lost its data

        for page in PAGES:
            answers = [
                await http.get(page.path, params=page.params)
                for http in (read.cached, read.uncached)
            ]
            assert [a.status_code for a in answers] == [503, 503], page
            assert answers[0].headers["retry-after"] == answers[1].headers["retry-after"]
            assert [without_id(a) for a in answers] == [without_id(answers[1])] * 2
        assert [a.status_code for a in wrong] == [400, 400]
        assert without_id(wrong[0]) == without_id(wrong[1])


async def answered(http: httpx.AsyncClient, path: str) -> bool:
    return (await http.get(path)).status_code == 200


def without_id(answer: httpx.Response) -> dict[str, Any]:
    """A problem's body but its request id (each request has its own)."""
    body: dict[str, Any] = answer.json()
    body.pop("request_id", None)
    return body
