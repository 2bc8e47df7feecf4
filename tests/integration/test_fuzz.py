"""Every operation of the served OpenAPI document, fuzzed by schemathesis on real Redis and
PostgreSQL: no 5xx, only documented statuses, content types and bodies, valid input accepted and
invalid input refused, keys enforced; and what was accepted is what the worker persists.

Size: ``RANKER_FUZZ_EXAMPLES`` cases per operation and caller (default 50: about 25 s a caller,
a share of CI's time that ``make test`` can afford).
The long run is ``make fuzz`` (2,000 each); ``-s`` prints the cases tried, one line each::

    RANKER_FUZZ_EXAMPLES=2000 .venv/bin/python -m pytest tests/integration/test_fuzz.py -s
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis
from schemathesis import APIOperation, Case, GenerationMode, Response
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)
from starlette.routing import Route

from persistence import repository
from persistence.archive import Archive
from persistence.moderation import Moderator, complete_pending
from persistence.service import Persistence
from persistence.verify import Verifier
from persistence.worker import Worker
from ranker.api.app import create_app
from ranker.api.routes import routes
from ranker.api.state import AppState
from ranker.catalog import Catalog
from ranker.definitions import BoardDefinition
from ranker.models import SubmitRequest
from ranker.ranking import Ranking
from ranker.settings import Settings
from tests.fixtures.ranker import ADMIN_KEY, READ_KEY, WRITE_KEY, auth_headers, wait_for

#: An operation of any specification (schemathesis types it by its parameters and schema).
Operation = APIOperation[Any, Any, Any, Any]
EXAMPLES = int(os.environ.get("RANKER_FUZZ_EXAMPLES", "50"))
#: Explicit, so that a schemathesis upgrade changing its defaults changes nothing here.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    positive_data_acceptance,  # a valid request is not refused with 400 or 422
    negative_data_rejection,  # an invalid one is not answered 2xx
    ignored_auth,  # with a key that worked: the same request without one, or a wrong one, is 401
]
#: The statuses that refuse an invalid request: schemathesis' list but 5xx (never right here),
#: and the service's size limits (an invalid query or header set long enough is refused 414 or 431
#: before anything reads it).
REFUSALS = [400, 401, 403, 404, 405, 406, 409, 413, 414, 415, 422, 428, 429, 431]
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}}}
)
#: Players 1..SEEDED have scores on every board, so that rank and around also answer 200 (the
#: fuzzer draws small ids first).
SEEDED = 10
#: Answered before any route's key check: a path that leads to no route, a URL or headers too long.
AT_THE_DOOR = {404, 414, 431}
#: A defined board the test makes, beside the built-in ones: valid requests name one of these
#: in most cases (a board id drawn from its pattern names no board: 404).
DEFINED = "fuzz-weekly"
KNOWN_BOARDS = ["global", "mode-solo", DEFINED, DEFINED]
SUBMIT = "/api/leaderboard/submit"
PLAYER, AUDIT = "/api/players/{user_id}", "/api/audit"
#: Operations that succeed only on a state no schema can name (a banned player, a session id
#: accepted before): all 404 is their right answer to made-up requests.
NEEDS_STATE = {("POST", PLAYER + "/unban"), ("DELETE", "/api/sessions/{session_id}")}


@dataclass(frozen=True)
class Caller:
    """Who sends the fuzzed requests, and the one status each request of a kind must then get
    (``None``: let through)."""

    #: ``None``: only the Authorization schemathesis makes up (absent, empty or a random key).
    headers: dict[str, str] | None
    public_reads: bool = True
    writes_refused: int | None = None
    reads_refused: int | None = None
    admin_refused: int | None = None

    def refused(self, operation: Operation) -> int | None:
        method, path = operation.method.upper(), operation.path
        if path == SUBMIT or (method, path) == ("PUT", PLAYER):
            return self.writes_refused
        if method in ("PUT", "DELETE") or path.endswith(("/ban", "/unban")) or path == AUDIT:
            return self.admin_refused
        # Health, readiness, metrics and the page stay open to probes, scrapers and people.
        return self.reads_refused if operation.path.startswith("/api/") else None


CALLERS = {
    "admin-key": Caller(auth_headers(ADMIN_KEY)),
    "write-key": Caller(auth_headers(WRITE_KEY), admin_refused=403),
    "read-key": Caller(auth_headers(READ_KEY), writes_refused=403, admin_refused=403),
    "no-key": Caller(None, writes_refused=401, admin_refused=401),
    "no-key-private-reads": Caller(
        None, public_reads=False, writes_refused=401, reads_refused=401, admin_refused=401
    ),
}


def fuzz(operation: Operation, headers: dict[str, str] | None) -> list[Response]:
    """Send ``EXAMPLES`` generated requests, valid and invalid, to ``operation``; each response
    must pass ``CHECKS``. Returns the responses."""
    responses: list[Response] = []
    strategy = operation.as_strategy(GenerationMode.POSITIVE) | operation.as_strategy(
        GenerationMode.NEGATIVE
    )

    # derandomize: CI sees the same cases on every run; database=None: no failing examples are
    # saved under .hypothesis/ to be replayed (and to make runs differ).
    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None)
    @hypothesis.given(
        case=strategy,
        board=st.sampled_from([None, *KNOWN_BOARDS]),
        player=st.sampled_from([None, *range(1, SEEDED + 1)]),
    )
    def run(case: Case[Operation], board: str | None, player: int | None) -> None:
        # Only a valid case names a known board or a seeded player: a changed invalid one may
        # be judged anew.
        valid = case.meta is not None and case.meta.generation.mode is GenerationMode.POSITIVE
        if board and "board_id" in case.path_parameters and valid:
            case.path_parameters["board_id"] = board
        if player and "user_id" in case.path_parameters and valid:
            case.path_parameters["user_id"] = player
        if valid and case.query and "cursor" in case.query:
            # A valid cursor is one a page returned: opaque, so no schema can generate one
            # (made-up ones are refused 400, which the invalid cases try).
            del case.query["cursor"]
        responses.append(case.call_and_validate(headers=headers, checks=CHECKS))

    run()
    return responses


async def seed(redis: Redis, settings: Settings) -> set[UUID]:
    """Scores for players 1..SEEDED on every mode's board; returns their event ids."""
    ranking = Ranking(redis, settings)
    accepted: set[UUID] = set()
    for user_id in range(1, SEEDED + 1):
        for mode in settings.game_modes:
            request = SubmitRequest(user_id=user_id, score=user_id * 10, game_mode=mode)
            accepted.add(UUID((await ranking.submit(request)).event_id))
    return accepted


# pytest-timeout's 300 s is meant for a hung test; a long run takes about 2 min per caller at
# 2,000 cases on 2 busy cores, so the bound grows with the size.
@pytest.mark.timeout(120 + EXAMPLES // 2)
# Hypothesis warns when the global `random` state moves while it draws a case. Here the app's
# background services move it from their own thread (psycopg_pool jitters each new connection's
# lifetime with random()); the cases are drawn from hypothesis' own generator all the same.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies"
    ":hypothesis.errors.HypothesisDeprecationWarning"
)
@pytest.mark.parametrize("name", CALLERS)
async def test_every_operation_answers_as_documented_to_fuzzed_requests(
    name: str,
    make_settings: Callable[..., Settings],
    settings: Settings,
    redis: Redis,
    pool: AsyncConnectionPool,
    worker: Worker,
    loaded: None,
) -> None:
    caller = CALLERS[name]
    defined = BoardDefinition(id=DEFINED, operator="best", reset="weekly", retain_periods=2)
    await Catalog(redis, settings).put(defined)
    accepted = await seed(redis, settings)
    # The worker, the watchdog and the archive run beside the app, as `ranker serve` runs
    # them: boards made with a backfill get filled, past periods read, moderation completes (a
    # ban may answer 202 after this short wait; the drain below persists what is left, and
    # completes what the watchdog would). A live stream ends after its first events, so that
    # its response is whole.
    fuzzed = make_settings(
        public_reads=caller.public_reads, moderation_wait_s=0.05, stream_max_s=0.05
    )
    records, archive = Moderator(fuzzed), Archive(fuzzed)
    app = create_app(fuzzed, [archive, records, Persistence(fuzzed)], archive, records)
    # Fetching the document runs the app's lifespan in schemathesis' event loop thread, where
    # it also sends every case (so the app's Redis client lives on the loop that uses it); the
    # schemathesis pytest plugin ends that lifespan when the test ends, before the fixtures.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    assert isinstance(app.state.ranker, AppState)

    operations = [schema[path][method] for path in schema for method in schema[path]]
    # Every route is documented, so every route is fuzzed (but the document itself).
    assert {(op.method.upper(), op.path) for op in operations} == {
        (method, route.path)
        for route in routes()
        if isinstance(route, Route) and route.path != "/openapi.json"
        for method in route.methods or ()
        if method != "HEAD"
    }

    async def nothing_filling() -> bool:
        snapshot = await Catalog(redis, settings).reload()
        return all(record.state != "filling" for record in snapshot.records.values())

    for operation in operations:
        # A board a PUT made with a backfill answers 503 until the watchdog has filled it
        # (seconds): by design, and not what this test is after.
        await wait_for(nothing_filling, 30, "the boards made with a backfill to be filled")
        responses = fuzz(operation, caller.headers)
        statuses = Counter(response.status_code for response in responses)
        tally = dict(sorted(statuses.items()))
        print(f"fuzz {operation.label} [{name}]: {len(responses)} cases, statuses {tally}")

        refused = caller.refused(operation)
        if refused is None:
            state_needed = (operation.method.upper(), operation.path) in NEEDS_STATE
            answered = statuses[200] + statuses[201] + statuses[202]
            assert answered > 0 or (state_needed and statuses[404]), (operation.label, statuses)
        else:
            # The fuzzer's invalid requests may also leave the Authorization header out: 401.
            assert statuses[refused] > 0, (operation.label, statuses)
            assert set(statuses) <= {refused, 401, *AT_THE_DOOR}, (operation.label, statuses)
        if operation.path == SUBMIT:
            accepted |= {UUID(r.json()["event_id"]) for r in responses if r.status_code == 200}

    # Exactly the accepted sessions reach PostgreSQL, and its scores are those of the boards.
    await worker.drain()
    await complete_pending(settings, redis, pool)
    async with pool.connection() as conn:
        assert await repository.select_persisted_event_ids(conn, list(accepted)) == accepted
        cur = await conn.execute("SELECT count(*) FROM game_sessions")
        assert await cur.fetchone() == (len(accepted),)
    assert (await Verifier(settings, redis, pool).run()).ok
