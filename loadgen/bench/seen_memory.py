"""Redis bytes per idempotency key and per submission: ``python -m loadgen.bench.seen_memory``.

On a fresh throwaway Redis (no persistence), ``Ranking.submit`` runs ``--submissions`` times for
players already on the boards (so the boards do not grow), each with a new session id shaped as
``--session-id`` says: ``uuid`` (36 characters, what the README recommends), ``hex`` (32, what
ranker makes when a client sends none) or ``loadgen`` (the load generator's ``lg-<run>-<n>``).
It prints ``INFO memory`` used_memory per submission with the stream entries still there (not yet
persisted) and once the stream is gone (what the worker leaves: the idempotency keys), and
``MEMORY USAGE`` of one key. BENCHMARKS.md, "Redis memory per submission", has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import uuid
from collections.abc import Iterator
from typing import Any

from redis.asyncio import Redis

from ranker.dev import servers as devservers
from ranker.keys import Keys
from ranker.models import SubmitRequest
from ranker.ranking import Ranking
from ranker.settings import Settings

PLAYERS = 1_000
IN_FLIGHT = 64


def session_ids(shape: str) -> Iterator[str]:
    """An endless supply of session ids of one shape."""
    run = uuid.uuid4().hex[:8]
    if shape == "uuid":
        return (str(uuid.uuid4()) for _ in itertools.count())
    if shape == "hex":
        return (uuid.uuid4().hex for _ in itertools.count())
    return (f"lg-{run}-{n}" for n in itertools.count())


async def used_memory(redis: Redis) -> int:
    info: dict[str, Any] = await redis.info("memory")
    return int(info["used_memory"])


async def submit_many(ranking: Ranking, count: int, ids: Iterator[str]) -> None:
    """``count`` submissions, ``IN_FLIGHT`` at a time, for users 1..PLAYERS in turn."""
    users = itertools.cycle(range(1, PLAYERS + 1))
    done = 0
    while done < count:
        step = min(IN_FLIGHT, count - done)
        await asyncio.gather(
            *(
                ranking.submit(SubmitRequest(user_id=next(users), score=100, session_id=next(ids)))
                for _ in range(step)
            )
        )
        done += step


async def measure(url: str, submissions: int, shape: str) -> dict[str, Any]:
    """The figures of one run on the Redis at ``url`` (flushed first)."""
    settings = Settings(
        redis_url=url, database_url="postgresql://unused", max_backlog=10 * submissions
    )
    keys = Keys(settings.namespace)
    redis = Redis.from_url(url)
    try:
        await redis.flushall()
        await redis.set(keys.marker, "loaded")
        ranking = Ranking(redis, settings)
        ids = session_ids(shape)
        # Every player on every board first: what follows adds no board member.
        await submit_many(ranking, PLAYERS, ids)
        await redis.delete(keys.events)
        sample_id = next(ids)
        await ranking.submit(SubmitRequest(user_id=1, score=100, session_id=sample_id))
        sample_key = keys.seen(sample_id)
        before = await used_memory(redis)
        await submit_many(ranking, submissions, ids)
        with_stream = await used_memory(redis)
        await redis.delete(keys.events)  # what the worker's XDELs leave once all is persisted
        persisted = await used_memory(redis)
        value = await redis.get(sample_key)
        return {
            "submissions": submissions,
            "session_id": shape,
            "sample_session_id": sample_id,
            "key": sample_key,
            "key_bytes": len(sample_key.encode()),
            "value_bytes": len(value or b""),
            "memory_usage_of_key": await redis.memory_usage(sample_key, samples=0),
            "bytes_per_submission_with_stream": round((with_stream - before) / submissions, 1),
            "bytes_per_submission_persisted": round((persisted - before) / submissions, 1),
            "server": (await redis.info("server"))["redis_version"],
        }
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadgen.bench.seen_memory", description=__doc__
    )
    parser.add_argument("--submissions", type=int, default=100_000)
    parser.add_argument("--session-id", choices=("uuid", "hex", "loadgen"), default="uuid")
    parser.add_argument("--redis-url", help="a Redis to FLUSHALL and use (default: a throwaway)")
    args = parser.parse_args(argv)
    if args.redis_url:
        figures = asyncio.run(measure(args.redis_url, args.submissions, args.session_id))
    else:
        with devservers.redis_server() as server:
            figures = asyncio.run(measure(server.url, args.submissions, args.session_id))
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
