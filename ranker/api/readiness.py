"""Readiness, computed in one place: for ``/readyz`` and, every few seconds, for the
``ranker_ready`` gauge, so that the metric is current even when nothing probes the process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from ranker import metrics
from ranker.api.state import AppState
from ranker.errors import RedisUnavailable

log = logging.getLogger("ranker")
#: How often each API process computes its readiness for the metric: well within a scrape
#: interval, at three Redis calls (and one INFO memory) a time.
INTERVAL_S = 5.0


@dataclass(frozen=True, slots=True)
class Readiness:
    """One computation of readiness: what ``/readyz`` answers."""

    ready: bool
    body: dict[str, object]
    #: The ``Retry-After`` of a 503 (None when ready).
    retry_after_s: int | None


async def readiness(state: AppState) -> Readiness:
    """Whether the process is ready: Redis answers, the boards are loaded, the backlog is under
    its limit, Redis memory is under the watermark (read afresh here, which also updates what
    submit consults) and no background service reports a problem (its reason is the body's
    ``detail``). Sets ``ranker_ready`` and, when Redis answers, ``ranker_backlog_events``."""
    limit = state.settings.max_backlog
    try:
        loaded = await state.ranking.ready()
        backlog = await state.ranking.backlog()
        memory = await state.memory.refresh()
    except RedisUnavailable as exc:
        metrics.ready.set(0)
        down: dict[str, object] = {"ready": False, "redis": "unreachable", "detail": exc.detail}
        return Readiness(False, down, 1)
    metrics.backlog.set(backlog)
    # A worker in this process refused by the namespace's binding persists nothing: the
    # backlog would grow unseen until it filled, so readiness says why at once.
    problems = [problem for svc in state.background if (problem := svc.problem())]
    ready = loaded and backlog < limit and not memory.full and not problems
    metrics.ready.set(1 if ready else 0)
    body: dict[str, object] = {
        "ready": ready,
        "redis": "ok",
        "boards_loaded": loaded,
        "backlog": backlog,
        "backlog_limit": limit,
        "redis_memory": memory.report(),
    }
    if problems:
        body["detail"] = "; ".join(problems)
    return Readiness(ready, body, None if ready else state.settings.retry_after_s)


async def watch(state: AppState, stop: asyncio.Event) -> None:
    """Compute readiness every ``INTERVAL_S`` until ``stop`` is set (the first time at once)."""
    while not stop.is_set():
        try:
            await readiness(state)  # a Redis outage is a 0, not an exception
        except Exception:
            # A bug, which /readyz answers with a 500; here it must not stop the loop and leave
            # the gauge at its last 1.
            metrics.ready.set(0)
            log.exception("readiness could not be computed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), INTERVAL_S)
