"""``ranker ban``, ``ranker unban`` and ``ranker void``: moderation for operators without HTTP
access, the same actions as the admin routes, named ``cli`` in the audit log."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator

from persistence.database import pool_for
from persistence.moderation import Moderator
from ranker.connections import background_redis
from ranker.errors import NotFound
from ranker.moderation import (
    Moderation,
    PlayerRecord,
    ban_player,
    unban_player,
    void_session,
)
from ranker.settings import Settings

#: Who the audit log names for an action taken here (there is no API key).
ACTOR = "cli"


@contextlib.asynccontextmanager
async def _moderating(settings: Settings) -> AsyncIterator[tuple[Moderation, Moderator]]:
    redis = background_redis(settings)
    try:
        async with pool_for(settings) as pool:
            yield Moderation(redis, settings), Moderator(settings, pool, redis)
    finally:
        await redis.aclose()


def _counts(record: PlayerRecord) -> str:
    return f"{record.voided} of {record.sessions} sessions voided"


def _waited(done: bool, settings: Settings) -> str:
    if done:
        return ""
    return (
        f" (the worker had not persisted it after {settings.moderation_wait_s:g} s: "
        "it completes by itself)"
    )


def ban(args: argparse.Namespace, settings: Settings) -> int:
    """Ban a player: off every board, their sessions voided, their submissions refused."""

    async def run() -> str:
        async with _moderating(settings) as (moderation, records):
            changed, done = await ban_player(moderation, records, args.user_id, ACTOR, args.reason)
            if not changed:
                return f"player {args.user_id} was already banned: nothing changed"
            after, _ = await records.record(args.user_id, 0)
            return f"banned player {args.user_id}: {_counts(after)}{_waited(done, settings)}"

    print(asyncio.run(run()))
    return 0


def unban(args: argparse.Namespace, settings: Settings) -> int:
    """Lift a ban: the sessions it voided count again, every board recomputed."""

    async def run() -> str:
        async with _moderating(settings) as (moderation, records):
            done = await unban_player(moderation, records, args.user_id, ACTOR, args.reason or "")
            after, _ = await records.record(args.user_id, 0)
            return (
                f"unbanned player {args.user_id}: their boards recomputed from the log, "
                f"{_counts(after)}{_waited(done, settings)}"
            )

    print(asyncio.run(run()))
    return 0


def void(args: argparse.Namespace, settings: Settings) -> int:
    """Void one session: every board it counted on recomputed for its player."""

    async def run() -> str:
        async with _moderating(settings) as (moderation, records):
            stored = await records.session(args.session_id)
            if stored is None:
                raise NotFound(f"there is no stored session {args.session_id!r}")
            what = f"session {args.session_id} (player {stored.user_id}, score {stored.score})"
            done = await void_session(
                moderation, records, args.session_id, stored, ACTOR, args.reason or ""
            )
            if done is None:
                return f"{what} was already voided: nothing changed"
            return f"voided {what}: its boards recomputed{_waited(done, settings)}"

    print(asyncio.run(run()))
    return 0
