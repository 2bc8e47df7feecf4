"""Reading the events stream: entries as ``Session`` objects, and the size of the backlog."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from persistence.repository import Session
from ranker.connections import translate_redis_errors
from ranker.keys import WORKER_GROUP, Keys
from ranker.scripts import Scripts

Fields = Mapping[bytes, bytes]
StreamEntry = tuple[bytes, Fields | None]


def parse_entry(fields: Fields) -> Session:
    """A stream entry's fields (as ``submit.lua`` writes them) as a ``Session``."""
    return Session(
        event_id=UUID(fields[b"e"].decode()),
        session_id=fields[b"s"].decode(),
        user_id=int(fields[b"u"]),
        score=int(fields[b"p"]),
        game_mode=fields[b"m"].decode(),
        created_ms=int(fields[b"t"]),
    )


#: The fields of an entry in the column order of ``repository.persist_sessions``.
_COLUMNS = (b"e", b"s", b"u", b"p", b"m", b"t")


def columns_of(fields: Fields) -> tuple[bytes, ...]:
    """An entry's values as ``persist_sessions`` takes them, without decoding them."""
    return tuple(fields[name] for name in _COLUMNS)


def generation_of(fields: Fields) -> bytes | None:
    """The rebuild generation an entry was tagged with (it is also in that rebuild's deltas)."""
    return fields.get(b"g")


async def ensure_group(redis: Redis, keys: Keys) -> None:
    """Create the worker's consumer group (and the stream) unless they exist."""
    try:
        await redis.xgroup_create(keys.events, WORKER_GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def _worker_group(groups: Sequence[dict[str, object]]) -> dict[str, object] | None:
    """The worker group's entry of an XINFO GROUPS reply (names are bytes or str)."""
    for group in groups:
        if group.get("name") in (WORKER_GROUP, WORKER_GROUP.encode()):
            return group
    return None


async def group_info(redis: Redis, keys: Keys) -> dict[str, object] | None:
    """The worker group's XINFO GROUPS entry, or ``None`` when the stream or group is missing."""
    try:
        return _worker_group(await redis.xinfo_groups(keys.events))
    except ResponseError:
        return None


async def unpersisted(redis: Redis, keys: Keys) -> int:
    """Entries not yet committed to PostgreSQL: delivered-but-unacknowledged plus unread.

    Exact where the API's backlog check (the stream's length) over-counts: entries a rebuild
    kept after they were acknowledged are not counted here.
    """
    group = await group_info(redis, keys)
    if group is None:
        return int(await redis.xlen(keys.events))
    pending = _as_int(group.get("pending"))
    lag = group.get("lag")
    if lag is None:
        # Redis cannot tell the lag (entries deleted past the group's cursor): count them.
        last = group.get("last-delivered-id") or b"0-0"
        unread = await redis.xrange(keys.events, min=b"(" + _as_bytes(last), max="+")
        return pending + len(unread or [])
    return pending + _as_int(lag)


def _as_bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _as_int(value: object) -> int:
    return int(value) if isinstance(value, int | bytes | str) else 0


async def trim_acknowledged(scripts: Scripts, keys: Keys, page_size: int) -> int:
    """Delete the entries acknowledged while a rebuild kept them, page by page; returns how
    many. Stops at once (returning 0) while a rebuild runs: it still needs them."""
    trim = scripts.trim_acked
    deleted, start = 0, "-"
    while True:
        with translate_redis_errors():
            count, following = await trim(
                [keys.events, keys.rebuild_flag], [WORKER_GROUP, start, page_size]
            )
        if int(count) < 0:
            return deleted
        deleted += int(count)
        if not following:
            return deleted
        start = following.decode()


async def kept_after_persisting(redis: Redis, keys: Keys) -> int:
    """Entries in the stream that are neither pending nor unread: persisted, acknowledged and
    kept (by a rebuild). Length and group counts are read in one MULTI, so entries persisted
    or added meanwhile cannot make a difference appear; 0 when Redis cannot tell the lag."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xlen(keys.events)
        pipe.xinfo_groups(keys.events)
        try:
            length, groups = await pipe.execute()
        except ResponseError:
            return 0  # no stream yet
    group = _worker_group(groups)
    if group is None or group.get("lag") is None:
        return 0
    return max(0, int(length) - _as_int(group.get("pending")) - _as_int(group["lag"]))


def _id_ms(entry_id: object) -> int:
    return int(_as_bytes(entry_id).split(b"-")[0])


async def lag_s(redis: Redis, keys: Keys) -> float:
    """Age of the oldest entry not yet persisted (pending, or not yet read), by Redis's clock;
    0 when none waits. Entries kept by a rebuild after they were persisted do not count."""
    group = await group_info(redis, keys)
    oldest: list[int] = []
    after = b"-"  # no group yet: every entry waits
    if group is not None:
        summary: Any = await redis.xpending(keys.events, WORKER_GROUP)
        if summary and summary.get("min"):
            oldest.append(_id_ms(summary["min"]))
        after = b"(" + _as_bytes(group.get("last-delivered-id") or b"0-0")
    unread: Any = await redis.xrange(keys.events, min=after, max="+", count=1)
    if unread:
        oldest.append(_id_ms(unread[0][0]))
    if not oldest:
        return 0.0
    seconds, micros = await redis.time()
    return max(0.0, seconds + micros / 1e6 - min(oldest) / 1000)
