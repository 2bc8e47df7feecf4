"""The routes of boards: their definitions (read by anyone, changed with an admin key) and the
reads of their periods (top pages, a player, the players around one, a friends list)."""

from __future__ import annotations

import json
import re

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ranker.api.auth import Scope
from ranker.api.board_reads import board_period, board_record, path_board_id, period_key, top_body
from ranker.api.guards import caller_of, guarded, observed
from ranker.api.inputs import (
    invalid,
    path_user_id,
    query_int,
    read_body,
    refuse_ambiguous_json,
    reject_unknown_query,
)
from ranker.api.problems import JSON, EncodedJSON
from ranker.api.state import AppState, state_of
from ranker.catalog import Record
from ranker.definitions import BOARD_ID_PATTERN, Board, BoardDefinition, PeriodOut
from ranker.errors import InvalidInput
from ranker.models import FieldError, LookupRequest
from ranker.periods import PERIOD_PATTERN, Period, period_by_id
from ranker.placements import period_of, retained, slot_of

_BOARD_ID = re.compile(BOARD_ID_PATTERN)
_PERIOD_CURSOR = re.compile(PERIOD_PATTERN)
#: Periods per page of a board's periods.
PERIODS_PAGE = 100


@observed("boards")
@guarded(Scope.READ)
async def list_boards(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, set())
    snapshot = await state.ranking.catalog.snapshot()
    return JSON({"boards": await _described(state, snapshot.listed())})


@observed("board")
@guarded(Scope.READ)
async def get_board(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, set())
    (board,) = await _described(state, [await board_record(state, path_board_id(request))])
    return JSON(board)


@observed("board_put")
@guarded(Scope.ADMIN)
async def put_board(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, set())
    board_id = request.path_params["board_id"]
    if not _BOARD_ID.match(board_id):
        raise InvalidInput(
            "a board id is 1 to 48 of a-z, 0-9, _ and -, starting with a letter or digit",
            [FieldError(field="board_id", message=f"must match {BOARD_ID_PATTERN}")],
        )
    definition, backfill = _parse_definition(
        await read_body(request, state.settings.max_body_bytes), board_id, state
    )
    record, created = await state.ranking.catalog.put(definition, backfill, caller_of(request))
    (board,) = await _described(state, [record])
    return JSON(board, status_code=201 if created else 200)


@observed("board_delete")
@guarded(Scope.ADMIN)
async def delete_board(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, {"purge"})
    purge = request.query_params.get("purge", "false")
    if purge not in ("true", "false"):
        raise InvalidInput(
            "purge must be true or false", [FieldError(field="purge", message="true or false")]
        )
    board_id = path_board_id(request)
    await state.ranking.catalog.delete(board_id, purge=purge == "true", actor=caller_of(request))
    return JSON({"id": board_id, "state": "purged" if purge == "true" else "deleted"})


@observed("board_top")
@guarded(Scope.READ)
async def board_top(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, {"limit", "period", "cursor"})
    limit = query_int(request, "limit", 10, 1, state.settings.top_limit_max)
    wanted = request.query_params.get("period")
    record, period = await board_period(state, path_board_id(request), wanted)
    cursor = request.query_params.get("cursor")
    return EncodedJSON(await top_body(state, record, period, limit, cursor))


@observed("board_player")
@guarded(Scope.READ)
async def board_player(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, {"period"})
    user_id = path_user_id(request)
    wanted = request.query_params.get("period")
    record, period = await board_period(state, path_board_id(request), wanted)
    board = record.definition
    key = await period_key(state, board, period)
    return JSON(await state.pages.player(key, board.id, period.id, board.order, user_id))


@observed("board_around")
@guarded(Scope.READ)
async def board_around(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, {"limit", "period"})
    user_id = path_user_id(request)
    limit = query_int(request, "limit", 11, 1, state.settings.top_limit_max)
    wanted = request.query_params.get("period")
    record, period = await board_period(state, path_board_id(request), wanted)
    board = record.definition
    key = await period_key(state, board, period)
    return JSON(await state.pages.around(key, board.id, period.id, board.order, user_id, limit))


@observed("board_lookup")
@guarded(Scope.READ)
async def board_lookup(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, set())
    body = await read_body(request, state.settings.max_body_bytes)
    refuse_ambiguous_json(body)
    try:
        wanted = LookupRequest.model_validate_json(body)
    except ValidationError as exc:
        raise invalid(exc) from None
    record, period = await board_period(state, path_board_id(request), wanted.period)
    board = record.definition
    key = await period_key(state, board, period)
    found = await state.pages.lookup(key, board.id, period.id, board.order, wanted.user_ids)
    return JSON(found)


@observed("board_periods")
@guarded(Scope.READ)
async def board_periods(request: Request) -> Response:
    """The past periods of a board that hold players, newest first: those Redis retains (their
    members counted there), then those of PostgreSQL, by pages of ``PERIODS_PAGE``."""
    state = state_of(request)
    reject_unknown_query(request, {"cursor"})
    record = await board_record(state, path_board_id(request))
    board = record.definition
    before = request.query_params.get("cursor")
    if before is not None and not _PERIOD_CURSOR.match(before):
        raise InvalidInput(
            "the cursor is not one this service returned; start again without it",
            [FieldError(field="cursor", message="a next_cursor of this list")],
            status=400,
        )
    past = [p for p in retained(board, state.ranking.now())[1:] if before is None or p.id < before]
    counts = await state.ranking.members([slot_of(board, p.id) for p in past])
    found = [(p.id, members) for p, members in zip(past, counts, strict=True) if members]
    older = past[-1].id if past else before
    if board.reset != "never" and len(found) < PERIODS_PAGE and state.archive is not None:
        found += await state.archive.periods(board.id, older, PERIODS_PAGE - len(found))
    page = [
        {
            **_period_out(period_by_id(board.reset, board.timezone, pid)).model_dump(mode="json"),
            "members": members,
        }
        for pid, members in found[:PERIODS_PAGE]
    ]
    more = len(found) >= PERIODS_PAGE
    return JSON({"periods": page, "next_cursor": found[PERIODS_PAGE - 1][0] if more else None})


def _period_out(period: Period) -> PeriodOut:
    return PeriodOut(id=period.id, starts_at=period.starts_at, ends_at=period.ends_at)


async def _described(state: AppState, records: list[Record]) -> list[Board]:
    """Each board with its current period and its members (one Redis round trip)."""
    now = state.ranking.now()
    periods = [period_of(record.definition, now) for record in records]
    counts = await state.ranking.members(
        [
            slot_of(record.definition, period.id)
            for record, period in zip(records, periods, strict=True)
        ]
    )
    return [
        Board(
            **record.definition.model_dump(),
            state=record.state,
            period=_period_out(period),
            members=members,
        )
        for record, period, members in zip(records, periods, counts, strict=True)
    ]


def _parse_definition(body: bytes, board_id: str, state: AppState) -> tuple[BoardDefinition, bool]:
    """A PUT body: the definition's fields (``id`` optional, the path's) and ``backfill``."""
    refuse_ambiguous_json(body)
    try:
        fields = json.loads(body)
    except ValueError:
        raise InvalidInput(
            "the body is not valid JSON",
            [FieldError(field="body", message="invalid JSON")],
            status=400,
        ) from None
    if not isinstance(fields, dict):
        raise InvalidInput(
            "the body must be a JSON object",
            [FieldError(field="body", message="a JSON object")],
        )
    if fields.setdefault("id", board_id) != board_id:
        raise InvalidInput(
            "id must be the board id of the path",
            [FieldError(field="id", message=f"the path's: {board_id}")],
        )
    backfill = fields.pop("backfill", False)
    if not isinstance(backfill, bool):
        raise InvalidInput(
            "backfill must be true or false",
            [FieldError(field="backfill", message="a boolean")],
        )
    try:
        return BoardDefinition.model_validate(fields, context=state.limits), backfill
    except ValidationError as exc:
        raise invalid(exc) from None


def board_routes() -> list[BaseRoute]:
    """The routes of boards."""
    return [
        Route("/api/boards", list_boards, methods=["GET"]),
        Route("/api/boards/{board_id}", get_board, methods=["GET"]),
        Route("/api/boards/{board_id}", put_board, methods=["PUT"]),
        Route("/api/boards/{board_id}", delete_board, methods=["DELETE"]),
        Route("/api/boards/{board_id}/top", board_top, methods=["GET"]),
        Route("/api/boards/{board_id}/players/{user_id}", board_player, methods=["GET"]),
        Route("/api/boards/{board_id}/around/{user_id}", board_around, methods=["GET"]),
        Route("/api/boards/{board_id}/lookup", board_lookup, methods=["POST"]),
        Route("/api/boards/{board_id}/periods", board_periods, methods=["GET"]),
    ]
