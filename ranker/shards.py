"""Boards larger than one Redis node: ``RANKER_BOARD_SHARDS=N`` spreads each board's players over
N hash tags by user id (docs/design.md, "Sharded boards").

A shard holds, under its own tag, everything a submission of one of its players touches: the
board periods' sorted sets (its players' entries), the idempotency keys, the events stream, the
names and moderation state of its players, the marker, the rebuild flag, the pages version and a
copy of the definitions version. So a submission stays one atomic script on one node, and each
shard is persisted, rebuilt and verified on its own. The namespace's own tag keeps what is not a
player's is kept by shard 0, the namespace's home: the board definitions (the other shards hold
a copy of their version, which submit checks), the database binding and the rate limits.

With N = 1 the one shard is the namespace itself (today's key names: nothing moves).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from ranker.keys import Keys


def shard_of(user_id: int, shards: int) -> int:
    """The shard of a player: the user id modulo the shard count (user ids are positive, and
    PostgreSQL computes the same with ``mod``, which a rebuild filters by)."""
    return user_id % shards


def shard_tag(namespace: str, shard: int, shards: int) -> str:
    """The hash tag of one shard: ``<namespace>.<shard>.<k>``, ``k`` the first number that puts
    its slot in the middle quarter of the shard's share of the slot space. A cluster whose
    primaries hold equal runs of slots (what ``redis-cli --cluster create`` makes) thus has
    shard i on primary i of N. (A namespace never holds a dot: no tag is another's.)"""
    if not 0 <= shard < shards:
        raise ValueError(f"shard {shard} is not one of {shards}")
    share = REDIS_CLUSTER_HASH_SLOTS // shards
    low = shard * share + 3 * share // 8
    high = shard * share + 5 * share // 8
    k = 0
    while not low <= key_slot(f"{{{namespace}.{shard}.{k}}}".encode()) < high:
        k += 1
    return f"{namespace}.{shard}.{k}"


@dataclass(frozen=True)
class Shards:
    """The board shards of one namespace."""

    namespace: str
    count: int = 1

    @property
    def base(self) -> Keys:
        """The keys of the namespace's home, shard 0: its board definitions, binding and rate
        limits are there (and, with one shard, everything)."""
        return self.parts[0]

    @cached_property
    def parts(self) -> tuple[Keys, ...]:
        """The keys of each shard, in shard order."""
        if self.count == 1:
            return (Keys(self.namespace),)
        return tuple(
            Keys(self.namespace, shard_tag(self.namespace, i, self.count))
            for i in range(self.count)
        )

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def of(self, user_id: int) -> Keys:
        """The keys of the shard holding ``user_id``."""
        return self.parts[shard_of(user_id, self.count)]

    def others(self, keys: Keys) -> tuple[Keys, ...]:
        """Every shard but ``keys``'s."""
        return tuple(part for part in self.parts if part != keys)


@lru_cache(maxsize=64)
def shards_of(namespace: str, count: int) -> Shards:
    """The shards of a namespace (made once per process: their tags take a search)."""
    return Shards(namespace, count)


def home(namespace: str, count: int) -> Keys:
    """The keys of a namespace's home (``Shards.base``)."""
    return shards_of(namespace, count).base
