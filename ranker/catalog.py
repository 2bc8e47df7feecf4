"""The board definitions of a namespace, as every API process sees them, and their changes.

Redis holds them, in a hash beside the boards (``keys.definitions``), with a version token that
every change replaces. Each API process keeps a copy and compares the token about every
``REFRESH_S``; the submit script compares it on every submission and refuses a caller whose copy
is older, so a session counts on exactly the boards that exist when it is accepted, in every
process at once. Every change is also an entry of the events stream (``define.lua``), which the
worker persists to PostgreSQL in order with the sessions around it: the durable copy, from
which a rebuild restores the hash.

The built-in boards (``global``, ``mode-<mode>``) are not stored: they follow the settings.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import ValidationError
from redis.exceptions import ResponseError

from ranker.connections import Client, translate_redis_errors
from ranker.definitions import BoardDefinition, builtin_boards, immutable_changes, reserved
from ranker.errors import ConfigurationError, Conflict, NotFound, NotReady, RankerError
from ranker.keys import WORKER_GROUP, Keys
from ranker.models import FieldError
from ranker.placements import LOOKAHEAD, retained, slot_of
from ranker.scripts import Scripts
from ranker.settings import Settings
from ranker.shards import Shards, home, shards_of

log = logging.getLogger("ranker.catalog")
#: How old an API process's copy of the definitions may be before it compares the version.
REFRESH_S = 0.5
#: Position of the built-in boards: every session counts on them.
BUILT_IN = "0-0"
#: How often a change is tried again when another one got in between.
ATTEMPTS = 5

State = Literal["live", "filling", "deleted", "purged"]
STATES: tuple[State, ...] = ("live", "filling", "deleted", "purged")
#: States of a board that no longer counts sessions.
STOPPED = ("deleted", "purged")


@dataclass(frozen=True, slots=True)
class Record:
    """One board as the namespace holds it: its definition, its position (the id of the stream
    entry that created it: the sessions after it count on it) and its state (``filling`` while
    a backfill computes it from past sessions, ``deleted`` once it stopped counting,
    ``purged`` once its periods are being removed: a tombstone whose position is the purge's
    entry, kept until a new board takes the id)."""

    definition: BoardDefinition
    position: str
    state: State

    @property
    def body(self) -> str:
        """The record as ``define.lua`` takes it (without the position, which it adds)."""
        return f"{self.state} {self.definition.model_dump_json()}"

    @property
    def text(self) -> str:
        """The record as the hash holds it."""
        return f"{self.position} {self.body}"

    @classmethod
    def parse(cls, raw: bytes | str) -> Record:
        """A record of the hash; ``ValueError`` for one this version cannot read."""
        text = raw.decode() if isinstance(raw, bytes) else raw
        position, state, body = text.split(" ", 2)
        if state not in STATES:
            raise ValueError(f"unknown board state {state!r}")
        definition = BoardDefinition.model_validate_json(body)
        return cls(definition, position, state)


@dataclass(frozen=True)
class Snapshot:
    """The definitions at one version (``None``: Client holds none, as after a wipe)."""

    version: str | None
    records: Mapping[str, Record] = field(default_factory=dict)

    def find(self, board_id: str) -> Record | None:
        """The board ``board_id``, deleted ones included (not purged ones)."""
        record = self.records.get(board_id)
        return None if record is None or record.state == "purged" else record

    def listed(self) -> list[Record]:
        """The boards that exist (not deleted), built-in ones first."""
        return [record for record in self.records.values() if record.state not in STOPPED]

    def counting(self, game_mode: str) -> list[BoardDefinition]:
        """The boards a session of ``game_mode`` counts on, ``global`` first."""
        return [
            r.definition
            for r in self.records.values()
            if r.state not in STOPPED and r.definition.counts(game_mode)
        ]


class Catalog:
    """The definitions of one namespace on one Redis client."""

    def __init__(
        self, redis: Client, settings: Settings, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = home(settings.namespace, settings.board_shards)
        self.scripts = Scripts.register(redis)
        self.clock = clock
        self._builtin = {
            board.id: Record(board, BUILT_IN, "live")
            for board in builtin_boards(settings.game_modes)
        }
        self._snapshot: Snapshot | None = None
        self._checked = 0.0
        self._lock = asyncio.Lock()

    async def snapshot(self) -> Snapshot:
        """The definitions, as of at most ``REFRESH_S`` ago."""
        if self._snapshot is not None and self.clock() < self._checked + REFRESH_S:
            return self._snapshot
        async with self._lock:  # one check at a time, however many requests wait on it
            if self._snapshot is not None and self.clock() < self._checked + REFRESH_S:
                return self._snapshot
            checked = self.clock()
            with translate_redis_errors():
                version = await self.redis.get(self.keys.definitions_version)
            current = version.decode() if isinstance(version, bytes) else version
            if self._snapshot is None or current != self._snapshot.version:
                self._snapshot = await self._read()
            self._checked = checked
            return self._snapshot

    async def reload(self) -> Snapshot:
        """The definitions as Redis holds them now."""
        async with self._lock:
            self._snapshot = await self._read()
            self._checked = self.clock()
            return self._snapshot

    async def _read(self) -> Snapshot:
        with translate_redis_errors():
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.get(self.keys.definitions_version)
                pipe.hgetall(self.keys.definitions)
                version, stored = await pipe.execute()
        return self._snapshot_of(version, stored)

    def _snapshot_of(self, version: bytes | None, stored: Mapping[bytes, bytes]) -> Snapshot:
        records = dict(self._builtin)
        for name, raw in sorted(stored.items()):
            try:
                record = Record.parse(raw)
            except (ValueError, ValidationError) as exc:
                # Written by another version, or by hand: skipped, never a failed request.
                log.warning("board %r has a record this version cannot read: %s", name, exc)
                continue
            if not reserved(record.definition.id):
                records[record.definition.id] = record
        return Snapshot(version.decode() if version is not None else None, records)

    async def put(
        self, definition: BoardDefinition, backfill: bool = False, actor: str = ""
    ) -> tuple[Record, bool]:
        """Create ``definition``, or change its title and retained periods; returns the record
        and whether it was created. ``actor``: who asks (an API key's id), for the audit log.
        ``Conflict`` for a built-in board, a fixed field changed or
        a deleted board's id (its periods are kept until it is purged)."""
        if reserved(definition.id):
            raise Conflict(f"board {definition.id!r} is built in: it cannot be changed")
        for _ in range(ATTEMPTS):
            current = (await self.reload()).records.get(definition.id)
            if current is None or current.state == "purged":
                if current is not None and not await self.persisted(current.position):
                    raise Conflict(
                        f"board {definition.id!r} is being purged: its id can be used again "
                        "once the purge is persisted (seconds)"
                    )
                record = Record(definition, "", "filling" if backfill else "live")
            elif current.state == "deleted":
                raise Conflict(
                    f"board {definition.id!r} was deleted and its periods are kept: delete it "
                    "with ?purge=true before using the id again"
                )
            else:
                changed = immutable_changes(current.definition, definition)
                if changed:
                    raise Conflict(
                        f"board {definition.id!r} cannot change {', '.join(changed)} once "
                        "created: create a board with another id",
                        [FieldError(field=name, message="fixed at creation") for name in changed],
                    )
                record = Record(definition, current.position, current.state)
            done, written = await self._write(definition.id, current, record, actor=actor)
            if done and written is not None:
                return written, record.position == ""
        raise RankerError(f"board {definition.id!r} kept changing: try again")

    async def set_state(self, board_id: str, state: State) -> None:
        """Move a board to ``state`` (a backfill done: ``live``)."""
        for _ in range(ATTEMPTS):
            current = (await self.reload()).find(board_id)
            if current is None:
                raise NotFound(f"there is no board {board_id!r}")
            if current.state == state:
                return
            record = Record(current.definition, current.position, state)
            if (await self._write(board_id, current, record))[0]:
                return
        raise RankerError(f"board {board_id!r} kept changing: try again")

    async def delete(self, board_id: str, purge: bool = False, actor: str = "") -> Record:
        """Stop counting on a board (its periods stay readable), or with ``purge`` remove it
        and, through the worker, its periods. Returns the record as it was."""
        if reserved(board_id):
            raise Conflict(f"board {board_id!r} is built in: it cannot be deleted")
        for _ in range(ATTEMPTS):
            current = (await self.reload()).find(board_id)
            if current is None:
                raise NotFound(f"there is no board {board_id!r}")
            if current.state == "deleted" and not purge:
                return current
            # A purge's tombstone takes the purge's own entry as its position (``persisted``);
            # its periods leave Redis with it (a new board of the id starts empty).
            after = Record(
                current.definition,
                "" if purge else current.position,
                "purged" if purge else "deleted",
            )
            removed = self._period_keys(current.definition) if purge else []
            if (await self._write(board_id, current, after, removed, actor))[0]:
                if purge:
                    # The other shards' periods, after the purge's own entry: a session placed
                    # with the old definitions meanwhile is refused by its shard's version.
                    shards = shards_of(self.settings.namespace, self.settings.board_shards)
                    others = [
                        key
                        for keys in shards.others(self.keys)
                        for key in self._period_keys(current.definition, keys)
                    ]
                    with translate_redis_errors():
                        for key in others:
                            await self.redis.unlink(key)
                return current
        raise RankerError(f"board {board_id!r} kept changing: try again")

    def _period_keys(self, board: BoardDefinition, keys: Keys | None = None) -> list[str]:
        """The Redis keys of every period of ``board`` Redis may hold now: those it retains,
        the next one (a lagging clock's), and their reloaded archives (of the board shard
        ``keys``; by default the home's)."""
        keys = keys or self.keys
        now = datetime.now(UTC)
        periods = retained(board, now + LOOKAHEAD) + retained(board, now)
        slots = {slot_of(board, period.id) for period in periods}
        return [key for slot in sorted(slots) for key in (keys.board(slot), keys.archive(slot))]

    async def persisted(self, entry_id: str, keys: Keys | None = None) -> bool:
        """Whether the worker has persisted every stream entry up to ``entry_id`` (none is
        unread or pending at or before it) of the stream of ``keys`` (a board shard's; by
        default the home's, where the definitions' changes go)."""
        events = (keys or self.keys).events
        with translate_redis_errors():
            try:
                groups = await self.redis.xinfo_groups(events)
                pending = await self.redis.xpending_range(
                    events, WORKER_GROUP, min="-", max=entry_id, count=1
                )
            except ResponseError:
                return True  # no stream: nothing waits
        for group in groups:
            if group.get("name") in (WORKER_GROUP, WORKER_GROUP.encode()):
                delivered = group.get("last-delivered-id") or b"0-0"
                text = delivered.decode() if isinstance(delivered, bytes) else str(delivered)
                return not pending and _entry_key(text) >= _entry_key(entry_id)
        return False

    async def _write(
        self,
        board_id: str,
        before: Record | None,
        after: Record,
        removed: Sequence[str] = (),
        actor: str = "",
    ) -> tuple[bool, Record | None]:
        """Compare and set one record: whether it was set (not when another change got in
        first), and the record as stored (with its position). ``actor``: the key id the audit
        log names ("": not an admin action, such as the end of a backfill)."""
        args = [
            board_id,
            before.text if before else "",
            after.body,
            after.position,
            uuid.uuid4().hex,
            actor,
        ]
        keys = [
            self.keys.definitions,
            self.keys.definitions_version,
            self.keys.events,
            self.keys.marker,
            self.keys.pages_version,
            *removed,
        ]
        with translate_redis_errors():
            done, text = await self.scripts.define(keys, args)
        if done == -1:
            raise NotReady(
                "the leaderboard lost its boards and waits for their rebuild; retry shortly",
                self.settings.retry_after_s,
            )
        if not done:
            return False, None
        self._snapshot = None  # this process sees its own change at once
        await sync_definitions_version(
            self.redis, shards_of(self.settings.namespace, self.settings.board_shards)
        )
        return True, Record.parse(text)


async def sync_definitions_version(redis: Client, shards: Shards) -> None:
    """Copy the definitions version of the namespace's home to every other board shard that
    holds another (``ranker.shards``): each shard's submissions are checked against its copy.
    After every change, after a rebuild, on a refused submission and by the watchdog (so a copy
    left behind by a process that stopped halfway catches up within a second)."""
    if not shards.sharded:
        return
    others = shards.others(shards.base)
    with translate_redis_errors():
        version = await redis.get(shards.base.definitions_version)
        if version is None:
            return
        copies = await asyncio.gather(*(redis.get(keys.definitions_version) for keys in others))
        for keys, copy in zip(others, copies, strict=True):
            if copy != version:
                await redis.set(keys.definitions_version, version)


#: Who the audit log names for the changes a boards file made.
BOARDS_FILE_ACTOR = "boards-file"


def _entry_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


async def apply_boards(catalog: Catalog, wanted: Sequence[BoardDefinition]) -> list[str]:
    """Make the namespace hold ``wanted`` (a boards file): create the missing boards, update
    titles and retained periods; returns a line per change. ``ConfigurationError`` naming the
    board and the field when a fixed field differs, or the board was deleted."""
    changes = []
    for definition in wanted:
        current = (await catalog.reload()).find(definition.id)
        if current is not None and current.state == "deleted":
            raise ConfigurationError(
                f"boards file: board {definition.id} was deleted: purge it "
                "(DELETE /api/boards/{id}?purge=true) or remove it from the file"
            )
        if current is not None:
            fixed = immutable_changes(current.definition, definition)
            if fixed:
                raise ConfigurationError(
                    f"boards file: board {definition.id}: {', '.join(fixed)} differs from the "
                    "running board's and is fixed at creation"
                )
            if current.definition == definition:
                continue
        _, created = await catalog.put(definition, actor=BOARDS_FILE_ACTOR)
        changes.append(f"{'created' if created else 'updated'} board {definition.id}")
    return changes
