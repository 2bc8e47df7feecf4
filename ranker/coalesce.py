"""Read scripts that arrive in one event-loop turn, sent to Redis as one pipeline.

Under load many requests reach their Redis call in the same turn of the event loop. Sent one by
one, each takes a connection from the pool, arms its own timeout, writes, and waits for its own
reply: most of a read's cost in the API process is this per-call work of redis-py, not Redis's.
The first read of a turn opens a batch and schedules its sending for the next turn; every read
that arrives before then joins it; the batch goes out as one pipeline on one connection (one
write, one read of the replies) and each caller gets its own reply or its own error.

Only reads are batched: each is one read-only script, so a batch adds no atomicity and loses
none (every script is still atomic on its own), and re-sending a batch after a lost connection
(redis-py's one retry) repeats nothing that changes data. A read is never stale beyond its own
round trip: the batch leaves at the next turn, after the submissions that were answered before it.
A batch of one goes out as a plain call, so a quiet process pays only the scheduling.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis import exceptions as redis_errors

from ranker import metrics
from ranker.connections import load_script

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

    from ranker.connections import Client


@dataclass(frozen=True, slots=True)
class _Call:
    script: AsyncScript
    keys: Sequence[str]
    args: Sequence[str | int | bytes]
    reply: asyncio.Future[Any]


class Coalescer:
    """The read scripts of one Redis client, batched per event-loop turn (``enabled``), or each
    sent alone (``RANKER_COALESCE_READS=false``)."""

    def __init__(self, redis: Client, enabled: bool = True, replicas: bool = False) -> None:
        self.redis = redis
        self.enabled = enabled
        #: Reads go as ``EVALSHA_RO``, which a cluster client with replica reads sends to the
        #: replicas (``RANKER_READ_FROM_REPLICAS``); plain EVALSHA always goes to a primary.
        self._command = "EVALSHA_RO" if replicas else "EVALSHA"
        self._batch: list[_Call] = []
        # The flushing tasks, kept referenced until done (the loop holds only weak references).
        self._flushing: set[asyncio.Task[None]] = set()
        #: Batches sent and the reads they carried, for the tests and the benchmark's notes.
        self.batches = 0
        self.reads = 0

    async def run(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int | bytes]
    ) -> Any:
        """The reply of ``script`` on ``keys`` and ``args``, as ``script(keys, args)`` gives it:
        redis-py's errors are raised to the caller (``translate_redis_errors`` is its own)."""
        if not self.enabled:
            return await self._alone(script, keys, args)
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Any] = loop.create_future()
        self._batch.append(_Call(script, keys, args, reply))
        if len(self._batch) == 1:
            task = loop.create_task(self._flush())
            self._flushing.add(task)
            task.add_done_callback(self._flushing.discard)
        return await reply

    async def _flush(self) -> None:
        batch, self._batch = self._batch, []
        self.batches += 1
        self.reads += len(batch)
        metrics.read_batch_size.observe(len(batch))
        try:
            replies = await self._send(batch)
            missing = [call for call, reply in zip(batch, replies, strict=True) if _noscript(reply)]
            if missing:
                # Redis lost its scripts (a restart, a failover, SCRIPT FLUSH): load each once,
                # then send again the reads that met NOSCRIPT.
                for script in {id(call.script): call.script for call in missing}.values():
                    await load_script(self.redis, script.script)
                again = iter(await self._send(missing))
                replies = [next(again) if _noscript(reply) else reply for reply in replies]
        except BaseException as exc:  # the batch as a whole failed: each caller gets the error
            for call in batch:
                if not call.reply.done():
                    call.reply.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for call, reply in zip(batch, replies, strict=True):
            if call.reply.done():  # the caller went away (its request was cancelled)
                continue
            if isinstance(reply, Exception):
                call.reply.set_exception(reply)
            else:
                call.reply.set_result(reply)

    async def _alone(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int | bytes]
    ) -> Any:
        """One read on its own, loading the script where it is missing (as ``AsyncScript``
        does, on every node of a cluster: replicas do not get a primary's scripts)."""
        try:
            return await self._call(self.redis, script, keys, args)
        except redis_errors.NoScriptError:
            await load_script(self.redis, script.script)
            return await self._call(self.redis, script, keys, args)

    def _call(
        self,
        client: Any,
        script: AsyncScript,
        keys: Sequence[str],
        args: Sequence[str | int | bytes],
    ) -> Any:
        return client.execute_command(self._command, script.sha, len(keys), *keys, *args)

    async def _send(self, batch: Sequence[_Call]) -> list[Any]:
        if len(batch) == 1:
            call = batch[0]
            try:
                return [await self._call(self.redis, call.script, call.keys, call.args)]
            except redis_errors.ResponseError as exc:  # its own error, as a batch's would be
                return [exc]
        async with self.redis.pipeline(transaction=False) as pipe:
            for call in batch:
                self._call(pipe, call.script, call.keys, call.args)
            return list(await pipe.execute(raise_on_error=False))


def _noscript(reply: Any) -> bool:
    return isinstance(reply, redis_errors.NoScriptError)
