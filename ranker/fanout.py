"""Reads of a sharded board (``RANKER_BOARD_SHARDS`` > 1): ranks summed, pages and windows
merged over the shards (docs/design.md, "Sharded boards").

Board order over the shards is score order, ties by shard and then in Redis's member order
within a shard. So the first k members of the board are a run at the start of every shard, and
a position on the board is a set of positions, one per shard: how many of each shard's members
come first. Pages carry those positions in their cursors, and any page costs
O(shards x (log n + length)) at any depth.

A rank is 1 + the members strictly ahead, summed over the shards (``ZCOUNT``: competition
ranks, ties shared, exact). Each shard answers in one script, the shards of one step in one
batch (``ranker.coalesce``); a read takes two steps (a window three, or four when its first
entry is not the player's score). While the board changes, the shards are read at slightly
different moments: each count is exact for its shard when it is read.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ranker.coalesce import Coalescer
from ranker.connections import translate_redis_errors
from ranker.entries import to_int
from ranker.errors import NotReady
from ranker.keys import Keys
from ranker.placements import Placement
from ranker.scripts import Scripts
from ranker.shards import Shards


@dataclass(frozen=True, slots=True)
class Part:
    """One shard of one board period: the shard's keys and its sorted set of the period."""

    keys: Keys
    key: str


@dataclass(frozen=True, slots=True)
class Member:
    """A member read from one shard."""

    member: bytes
    score: int
    name: bytes | None
    shard: int


@dataclass(frozen=True, slots=True)
class Run:
    """Members of the board in board order, from its 0-based ``position`` (the first one's rank
    ``first_rank``; 0 when empty), of a board of ``members``; ``offsets``: where the run ends
    in each shard (a next page's start)."""

    members: int
    first_rank: int
    position: int
    entries: list[Member]
    offsets: list[int]

    def flat(self) -> tuple[list[bytes], list[bytes | None]]:
        """The entries as ``ranking.ranked`` takes them: member, score, ... and the names."""
        flat: list[bytes] = []
        for entry in self.entries:
            flat += [entry.member, str(entry.score).encode()]
        return flat, [entry.name for entry in self.entries]


@dataclass(frozen=True, slots=True)
class Point:
    """A player on a sharded board: score, rank and name, the board's size, and where the player
    stands in each shard (how many of its members come first) and on the board."""

    score: int
    rank: int
    members: int
    name: bytes | None
    offsets: list[int]

    @property
    def position(self) -> int:
        return sum(self.offsets)


def order_key(order: str, entry: Member) -> tuple[int, int]:
    """The sort key of board order (ties by shard; a shard's own order is kept by the merge)."""
    return (-entry.score if order == "desc" else entry.score, entry.shard)


def merge(order: str, runs: Sequence[Sequence[Member]]) -> list[Member]:
    """The members of runs in board order (each run in its shard's order)."""
    return list(heapq.merge(*runs, key=lambda entry: order_key(order, entry)))


def members_of(shard: int, flat: Sequence[bytes], names: Sequence[bytes | None]) -> list[Member]:
    return [
        Member(flat[i], to_int(flat[i + 1]), names[i // 2] if names else None, shard)
        for i in range(0, len(flat), 2)
    ]


class Fanout:
    """The reads of sharded boards on one client's scripts and batcher."""

    def __init__(self, scripts: Scripts, reads: Coalescer, retry_after_s: int) -> None:
        self.scripts = scripts
        self.reads = reads
        self.retry_after_s = retry_after_s

    def _ready(self, replies: Sequence[Sequence[Any]]) -> None:
        if not all(reply[0] for reply in replies):
            raise NotReady(
                "the leaderboard is being rebuilt from the database; retry shortly",
                self.retry_after_s,
            )

    async def _all(self, calls: Sequence[Any]) -> list[Any]:
        with translate_redis_errors():
            replies = list(await asyncio.gather(*calls))
        self._ready(replies)
        return replies

    def _counts(self, part: Part, order: str, user: str, scores: Sequence[int]) -> Any:
        keys = [part.keys.marker, part.key, part.keys.names]
        return self.reads.run(self.scripts.shard_counts, keys, [order, user, *scores])

    def _page(self, part: Part, order: str, start: int, length: int) -> Any:
        keys = [part.keys.marker, part.key, part.keys.names]
        return self.reads.run(self.scripts.shard_page, keys, [order, start, length])

    async def ahead(self, parts: Sequence[Part], order: str, scores: Sequence[int]) -> list[int]:
        """For each score, the members of the board strictly ahead of it."""
        if not scores:
            return []
        replies = await self._all([self._counts(part, order, "", scores) for part in parts])
        return [sum(int(reply[5 + 2 * i]) for reply in replies) for i in range(len(scores))]

    async def ahead_if_loaded(
        self, parts: Sequence[Part], order: str, scores: Sequence[int]
    ) -> list[int] | None:
        """``ahead``, or ``None`` while a shard is not loaded (a rebuild is due or under way)."""
        try:
            return await self.ahead(parts, order, scores)
        except NotReady:
            return None

    async def submitted(
        self,
        shards: Shards,
        own: Keys,
        placements: Sequence[Placement],
        standings: Sequence[Any],
    ) -> tuple[list[Any], bool]:
        """``submit.lua``'s standings (score, rank pairs: ranks in the player's shard ``own``)
        with the members the other shards hold ahead of each score added (one batch of reads),
        and whether every shard is loaded (while one is rebuilt the ranks are unknown, as on
        one shard)."""
        others = shards.others(own)
        reads, where = [], []
        for i, placement in enumerate(placements):
            score = standings[2 * i]
            if score is not None:
                parts = [Part(keys, keys.board(placement.slot)) for keys in others]
                reads.append(self.ahead_if_loaded(parts, placement.order, [to_int(score)]))
                where.append(i)
        ranked = list(standings)
        for i, ahead in zip(where, await asyncio.gather(*reads), strict=True):
            if ahead is None:
                return ranked, False
            ranked[2 * i + 1] = int(ranked[2 * i + 1]) + ahead[0]
        return ranked, True

    async def top(
        self, parts: Sequence[Part], order: str, offsets: Sequence[int], length: int
    ) -> Run:
        """``length`` members from the position ``offsets`` (one per shard) names."""
        replies = await self._all(
            [self._page(part, order, offsets[i], length) for i, part in enumerate(parts)]
        )
        runs = [members_of(i, reply[2], reply[3]) for i, reply in enumerate(replies)]
        entries = merge(order, runs)[:length]
        ends = list(offsets)
        for entry in entries:
            ends[entry.shard] += 1
        position = sum(offsets)
        first_rank = 0
        if entries:
            first_rank = (
                1 if position == 0 else 1 + (await self.ahead(parts, order, [entries[0].score]))[0]
            )
        return Run(sum(int(r[1]) for r in replies), first_rank, position, entries, ends)

    async def point(
        self, parts: Sequence[Part], order: str, user_id: int, shard: int
    ) -> Point | None:
        """The player ``user_id`` (of shard ``shard``) on the board; ``None`` when absent."""
        with translate_redis_errors():
            own = await self._counts(parts[shard], order, str(user_id), [])
        self._ready([own])
        if own[2] is None:
            return None
        score = to_int(own[2])
        others = [i for i in range(len(parts)) if i != shard]
        replies = await self._all([self._counts(parts[i], order, "", [score]) for i in others])
        offsets = [0] * len(parts)
        offsets[shard] = int(own[3])
        ahead = int(own[5])
        members = int(own[1])
        for i, reply in zip(others, replies, strict=True):
            better, tied = int(reply[5]), int(reply[6])
            # Ties of a lower shard come first in board order, those of a higher one after.
            offsets[i] = better + tied if i < shard else better
            ahead += better
            members += int(reply[1])
        return Point(score, ahead + 1, members, own[4], offsets)

    async def window(
        self, parts: Sequence[Part], order: str, point: Point, length: int, above: int | None = None
    ) -> Run:
        """A window of up to ``length`` members holding the player at ``point``: ``above`` of
        them ahead of it, or by default placed as ``board_around.lua`` places it (away from the
        ends ``(length - 1) // 2`` ahead; near an end it slides)."""
        if above is None:
            start = max(0, min(point.position - (length - 1) // 2, point.members - length))
            above = point.position - start
        start = point.position - above
        below = length - above
        lows = [max(0, offset - above) for offset in point.offsets]
        replies = await self._all(
            [
                self._page(part, order, lows[i], point.offsets[i] - lows[i] + below)
                for i, part in enumerate(parts)
            ]
        )
        befores, afters = [], []
        for i, reply in enumerate(replies):
            run = members_of(i, reply[2], reply[3])
            cut = point.offsets[i] - lows[i]
            befores.append(run[:cut])
            afters.append(run[cut:])
        entries = (merge(order, befores)[-above:] if above else []) + merge(order, afters)[:below]
        first_rank = 0
        if entries:
            first = entries[0].score
            first_rank = (
                point.rank
                if first == point.score
                else 1 + (await self.ahead(parts, order, [first]))[0]
            )
        members = sum(int(reply[1]) for reply in replies)
        return Run(members, first_rank, start, entries, [])

    async def lookup(
        self, parts: Sequence[Part], order: str, user_ids: Sequence[int], shard_of: Any
    ) -> tuple[int, list[tuple[int, int, int, bytes | None]]]:
        """The board's size and ``(user id, score, rank, name)`` of those of ``user_ids`` on it,
        in board order."""
        by_shard: dict[int, list[int]] = {}
        for user_id in user_ids:
            by_shard.setdefault(shard_of(user_id), []).append(user_id)
        asked = sorted(by_shard)
        found = await self._all(
            [
                self.reads.run(
                    self.scripts.board_lookup,
                    [parts[i].keys.marker, parts[i].key, parts[i].keys.names],
                    [order, *by_shard[i]],
                )
                for i in asked
            ]
        )
        players: list[tuple[int, int, bytes | None, int]] = []
        for i, (_, _, flat, names) in zip(asked, found, strict=True):
            for j in range(0, len(flat), 3):
                players.append((int(flat[j]), to_int(flat[j + 1]), names[j // 3], i))
        replies = await self._all(
            [self._counts(part, order, "", [p[1] for p in players]) for part in parts]
        )
        members = sum(int(reply[1]) for reply in replies)
        ranked = [
            (user_id, score, 1 + sum(int(r[5 + 2 * k]) for r in replies), name, i)
            for k, (user_id, score, name, i) in enumerate(players)
        ]
        # Board order: score, then shard, then Redis's member order within the shard (member
        # text, "10" before "9"; descending on desc boards).
        if order == "desc":
            ranked.sort(key=lambda p: (-p[1], p[4], _reversed_text(str(p[0]))))
        else:
            ranked.sort(key=lambda p: (p[1], p[4], str(p[0])))
        return members, [(p[0], p[1], p[2], p[3]) for p in ranked]


def _reversed_text(text: str) -> tuple[int, ...]:
    """A key that sorts member texts in descending order inside an ascending sort (a prefix
    after the longer text, as ZREVRANGE puts it)."""
    return (*(-ord(c) for c in text), 1)
