"""Reading the events stream: entries as ``Session`` objects, and the size of the backlog."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from uuid import UUID

from redis.exceptions import ResponseError

from persistence.repository import Session, StoredDefinition
from ranker.connections import Client, translate_redis_errors
from ranker.keys import WORKER_GROUP, Keys
from ranker.placements import legacy_tokens, parse_tokens, tokens_text
from ranker.scripts import Scripts

Fields = Mapping[bytes, bytes]
StreamEntry = tuple[bytes, Fields | None]


def accepted_seq(entry_id: bytes | str) -> int:
    """A stream entry id as one bigint that orders acceptances as Redis did (``<ms>-<n>``
    packed as ``ms * 2**20 + n``: ``last`` boards keep the session with the highest)."""
    raw = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, n = raw.partition("-")
    return (int(ms) << SEQ_BITS) + int(n)


#: Bits of an entry id's sequence number in ``accepted_seq`` (Redis numbers entries within a
#: millisecond from 0; a million in one millisecond is beyond one server).
SEQ_BITS = 20


def kind_of(fields: Fields) -> bytes | None:
    """What an entry records other than a session (``None``): ``board`` (a change of a
    definition, ``define.lua``), ``name`` (``set_name.lua``), ``ban``, ``unban`` or ``void``
    (``ranker.moderation``)."""
    return fields.get(b"k")


def is_definition(fields: Fields) -> bool:
    """Whether an entry records a change of a board definition (``define.lua``), not a session."""
    return fields.get(b"k") == b"board"


def parse_entry(entry_id: bytes, fields: Fields) -> Session:
    """A session entry (as ``submit.lua`` writes it) as a ``Session``."""
    mode = fields[b"m"].decode()
    return Session(
        event_id=UUID(fields[b"e"].decode()),
        session_id=fields[b"s"].decode(),
        user_id=int(fields[b"u"]),
        score=int(fields[b"p"]),
        game_mode=mode,
        created_ms=int(fields[b"t"]),
        accepted_seq=accepted_seq(entry_id),
        tokens=tuple(parse_tokens(fields.get(b"b"), mode)),
        username=fields[b"n"].decode() if b"n" in fields else None,
    )


def parse_definition(entry_id: bytes, fields: Fields) -> tuple[StoredDefinition, int, int]:
    """A definition entry (``define.lua``) as the row to store, with its position and its own
    place in the stream as acceptance orders."""
    state, _, definition = fields[b"r"].decode().partition(" ")
    position = fields[b"p"].decode() or entry_id.decode()
    stored = StoredDefinition(
        id=fields[b"i"].decode(),
        definition=definition,
        position=position,
        state=state,
        backfilled=False,  # set by the backfill itself, once it has run
    )
    return stored, accepted_seq(position), accepted_seq(entry_id)


#: The fields of an entry in the column order of ``repository.persist_sessions``.
_COLUMNS = (b"e", b"s", b"u", b"p", b"m", b"t")
#: COPY's text format: NULL, and the one character of a name that needs escaping (names hold
#: no control character: no tab, newline or carriage return).
_NULL, _BACKSLASH = b"\\N", b"\\"


def columns_of(entry_id: bytes, fields: Fields) -> tuple[bytes, ...]:
    """A session entry's values as ``persist_sessions`` takes them, without decoding them
    (an entry from before board definitions has no placements: those it counted on then)."""
    placed = fields.get(b"b") or tokens_text(legacy_tokens(fields[b"m"].decode())).encode()
    name = fields.get(b"n")
    named = _NULL if name is None else name.replace(_BACKSLASH, _BACKSLASH * 2)
    return (
        *(fields[name] for name in _COLUMNS),
        str(accepted_seq(entry_id)).encode(),
        placed,
        named,
    )


def request_of(fields: Fields) -> str | None:
    """The id of the request that submitted a session entry (``None`` for an entry from before
    request ids, or made outside a request)."""
    request = fields.get(b"q")
    return request.decode() if request else None


def traces_of(entries: Sequence[StreamEntry]) -> Iterator[tuple[str, str | None]]:
    """``(traceparent, request id)`` of each session entry whose request was traced (field
    ``w``, written only with traces on): what a batch's span links to."""
    for _, fields in entries:
        if fields and (trace := fields.get(b"w")):
            yield trace.decode(), request_of(fields)


def generation_of(fields: Fields) -> bytes | None:
    """The rebuild generation an entry was tagged with (it is also in that rebuild's deltas)."""
    return fields.get(b"g")


async def ensure_group(redis: Client, keys: Keys) -> None:
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


async def group_info(redis: Client, keys: Keys) -> dict[str, object] | None:
    """The worker group's XINFO GROUPS entry, or ``None`` when the stream or group is missing."""
    try:
        return _worker_group(await redis.xinfo_groups(keys.events))
    except ResponseError:
        return None


async def unpersisted(redis: Client, keys: Keys) -> int:
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


async def kept_after_persisting(redis: Client, keys: Keys) -> int:
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


async def lag_s(redis: Client, keys: Keys) -> float:
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


async def oldest_entry_ms(redis: Client, keys: Keys) -> int | None:
    """When (Redis's clock, unix ms) the oldest entry still in the stream was added, pending,
    unread or kept by a rebuild alike; ``None`` when the stream is empty or missing."""
    with translate_redis_errors():
        first: Any = await redis.xrange(keys.events, count=1)
    return _id_ms(first[0][0]) if first else None
