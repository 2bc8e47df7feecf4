"""The routes of players: display names (write key), profiles (anyone; more with an admin
key), and moderation: bans, unbans, voided sessions and the audit log (admin key).

A moderation action takes effect in Redis first (``ranker.moderation``); the answer waits, up
to ``RANKER_MODERATION_WAIT_S``, for the worker to persist it and (an unban, a void) for the
player's scores recomputed from the session log to be written back, then describes the player
as they are. When the wait runs out the answer is 202 with ``completed: false``: the rest
happens by itself (the watchdog completes it).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ranker import moderation
from ranker.api.auth import Scope
from ranker.api.guards import caller_of, guarded, is_admin, observed
from ranker.api.inputs import (
    parse_body,
    path_user_id,
    query_int,
    read_body,
    reject_unknown_query,
)
from ranker.api.problems import JSON
from ranker.api.state import AppState, state_of
from ranker.connections import translate_redis_errors
from ranker.definitions import BoardDefinition
from ranker.entries import to_int
from ranker.errors import InvalidInput, NotFound, NotReady, Unavailable
from ranker.fanout import Part
from ranker.models import SESSION_ID_PATTERN, FieldError
from ranker.moderation import BANNED, PlayerRecords, StoredSession, VoidedSession, is_pending
from ranker.placements import period_of, slot_of
from ranker.player_models import (
    AuditEntryOut,
    AuditPage,
    BanOut,
    BanRequest,
    ModerationRequest,
    ModerationResult,
    NameRequest,
    NameResponse,
    PlayerBoard,
    PlayerProfile,
    VoidedSessionOut,
)

#: Voided sessions an admin's view of a player lists.
VOIDED_LISTED = 100
#: Entries per page of the audit log, by default and at most.
AUDIT_PAGE, AUDIT_PAGE_MAX = 50, 500
_SESSION_ID = re.compile(SESSION_ID_PATTERN)


@observed("player_name")
@guarded(Scope.WRITE)
async def put_player(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, set())
    user_id = path_user_id(request)
    wanted = parse_body(await read_body(request, state.settings.max_body_bytes), NameRequest)
    await state.moderation.set_name(user_id, wanted.username)
    return JSON(NameResponse(user_id=user_id, username=wanted.username))


@observed("player")
@guarded(Scope.READ)
async def get_player(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, set())
    user_id = path_user_id(request)
    admin = is_admin(request)
    profile = await _profile(state, user_id, admin=admin)
    known = profile.username is not None or profile.banned or profile.boards or profile.sessions
    if not known:
        raise NotFound(f"there is no player {user_id}")
    if admin:
        return JSON(profile)
    # The admin fields are left out; username is null when unknown, never left out.
    return JSON(profile.model_dump(exclude_none=True) | {"username": profile.username})


@observed("player_ban")
@guarded(Scope.ADMIN)
async def ban_player(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, set())
    user_id = path_user_id(request)
    wanted = await _reason(request, state, BanRequest)
    records = _records(state)
    _, done = await moderation.ban_player(
        state.moderation, records, user_id, caller_of(request), wanted.reason or ""
    )
    return await _result(state, "ban", user_id, done)


@observed("player_unban")
@guarded(Scope.ADMIN)
async def unban_player(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, set())
    user_id = path_user_id(request)
    wanted = await _reason(request, state, ModerationRequest)
    records = _records(state)
    done = await moderation.unban_player(
        state.moderation, records, user_id, caller_of(request), wanted.reason or ""
    )
    return await _result(state, "unban", user_id, done)


@observed("session_void")
@guarded(Scope.ADMIN)
async def void_session(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, set())
    session_id = request.path_params["session_id"]
    wanted = await _reason(request, state, ModerationRequest)
    records = _records(state)
    stored = await _stored_session(state, records, session_id)
    done = await moderation.void_session(
        state.moderation, records, session_id, stored, caller_of(request), wanted.reason or ""
    )
    if done is None:
        done = True  # voided alone before: nothing changes, the answer is the same
    else:
        stored = await records.session(session_id) or stored
    return await _result(state, "void", stored.user_id, done, _voided(session_id, stored))


@observed("audit")
@guarded(Scope.ADMIN)
async def audit_log(request: Request) -> Response:
    state = state_of(request)
    reject_unknown_query(request, {"limit", "cursor"})
    limit = query_int(request, "limit", AUDIT_PAGE, 1, AUDIT_PAGE_MAX)
    raw = request.query_params.get("cursor")
    before = None
    if raw is not None:
        if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and int(raw) < 2**63):
            raise InvalidInput(
                "the cursor is not one this service returned; start again without it",
                [FieldError(field="cursor", message="a next_cursor of this log")],
                status=400,
            )
        before = int(raw)
    found = await _records(state).audit(before, limit + 1)
    entries = [
        AuditEntryOut(
            at=e.at.isoformat(),
            key_id=e.key_id,
            action=e.action,
            target=e.target,
            reason=e.reason,
            detail=e.detail,
        )
        for e in found[:limit]
    ]
    more = len(found) > limit
    return JSON(AuditPage(entries=entries, next_cursor=str(found[limit - 1].seq) if more else None))


def _records(state: AppState) -> PlayerRecords:
    if state.records is None:
        raise Unavailable("moderation needs PostgreSQL, which this process does not reach")
    return state.records


async def _reason(
    request: Request, state: AppState, model: type[ModerationRequest]
) -> ModerationRequest:
    """The body's reason: required by a ban; elsewhere the body is optional."""
    body = b""
    if model is BanRequest or request.headers.get("content-length", "0") != "0":
        body = await read_body(request, state.settings.max_body_bytes)
    return parse_body(body, model) if body else model()


async def _stored_session(
    state: AppState, records: PlayerRecords, session_id: str
) -> StoredSession:
    """The session a void names: stored, or accepted and about to be (its idempotency key
    says so: the worker is waited for)."""
    if not _SESSION_ID.match(session_id):
        raise NotFound(f"there is no session {session_id!r}")
    stored = await records.session(session_id)
    if stored is None:
        # The session's board shard is not known from its id: each is asked (one round trip).
        parts = state.ranking.shards.parts
        with translate_redis_errors():
            async with state.redis.pipeline(transaction=False) as pipe:
                for keys in parts:
                    pipe.exists(keys.seen(session_id))
                    pipe.xrevrange(keys.events, count=1)
                replies = await pipe.execute()
        for accepted, last in zip(replies[::2], replies[1::2], strict=True):
            if accepted and last:
                user_id = int(last[0][1][b"u"]) if b"u" in last[0][1] else None
                await records.wait_persisted(
                    last[0][0].decode(), state.settings.moderation_wait_s, user_id
                )
                stored = await records.session(session_id)
                break
    if stored is None:
        raise NotFound(f"there is no session {session_id!r}")
    return stored


async def _standing(
    state: AppState, board: BoardDefinition, period_id: str, user_id: int
) -> tuple[int, int, int] | None:
    """A player's score, the board's size and the player's rank in one period (``None``: not
    on it, or the boards are not loaded)."""
    slot = slot_of(board, period_id)
    shards = state.ranking.shards
    if shards.sharded:
        parts = [Part(keys, keys.board(slot)) for keys in shards.parts]
        shard = shards.parts.index(shards.of(user_id))
        try:
            point = await state.pages.fanout.point(parts, board.order, user_id, shard)
        except NotReady:
            return None
        return None if point is None else (point.score, point.members, point.rank)
    keys = shards.base
    ready, members, score, rank, _ = await state.pages.reads.run(
        state.pages.scripts.board_player,
        [keys.marker, keys.board(slot), keys.names],
        [board.order, user_id],
    )
    if not ready or score is None:
        return None
    return to_int(score), int(members), int(rank)


def _voided(session_id: str, stored: StoredSession | VoidedSession) -> VoidedSessionOut | None:
    """A session as the answers show it once voided (``None``: it is not)."""
    if stored.voided_at is None or stored.voided_by is None:
        return None
    return VoidedSessionOut(
        session_id=session_id,
        event_id=str(stored.event_id),
        score=stored.score,
        game_mode=stored.game_mode,
        created_at=stored.created_at.isoformat(),
        voided_at=stored.voided_at.isoformat(),
        voided_by=stored.voided_by,
        reason=stored.void_reason,
        by_ban=stored.voided_by_ban,
    )


async def _result(
    state: AppState,
    action: str,
    user_id: int,
    done: bool,
    session: VoidedSessionOut | None = None,
) -> Response:
    profile = await _profile(state, user_id, admin=True)
    result = ModerationResult(
        action=action, user_id=user_id, completed=done, session=session, player=profile
    )
    return JSON(result, status_code=200 if done else 202)


async def _profile(state: AppState, user_id: int, admin: bool) -> PlayerProfile:
    """The player as Redis shows them now (two round trips at once), and with ``admin`` what
    PostgreSQL holds of their sessions and ban."""
    snapshot = await state.ranking.catalog.snapshot()
    now = state.ranking.now()
    listed = [r for r in snapshot.listed() if r.state == "live"]
    shards = state.ranking.shards
    keys = shards.of(user_id)  # the player's names and state are in the player's shard
    periods = [period_of(record.definition, now).id for record in listed]
    reads = [
        _standing(state, record.definition, period_id, user_id)
        for record, period_id in zip(listed, periods, strict=True)
    ]

    async def name_and_state() -> list[Any]:
        async with state.redis.pipeline(transaction=False) as pipe:
            pipe.hget(keys.names, str(user_id))
            pipe.hget(keys.moderation, str(user_id))
            return list(await pipe.execute())

    with translate_redis_errors():
        # The board reads go out as one batch (ranker.coalesce), beside the two hashes' reads.
        (name, moderated), *standings = await asyncio.gather(name_and_state(), *reads)
    boards = {}
    for record, period, standing in zip(listed, periods, standings, strict=True):
        if standing is not None:
            score, count, place = standing
            boards[record.definition.id] = PlayerBoard(
                period=period,
                score=score,
                rank=place,
                members=count,
                percentile=round(100 * (count - place) / count, 2),
            )
    state_text = (moderated or b"").decode()
    banned = state_text[:1] in (BANNED, "u")
    profile = PlayerProfile(
        user_id=user_id,
        username=None if name is None else name.decode(),
        banned=banned,
        boards=boards,
    )
    if not admin or state.records is None:
        return profile
    record_row, voided = await state.records.record(user_id, VOIDED_LISTED)
    ban = None
    if record_row.banned_at and record_row.banned_by is not None:
        ban = BanOut(
            banned_at=record_row.banned_at.isoformat(),
            banned_by=record_row.banned_by,
            reason=record_row.ban_reason or "",
        )
    return profile.model_copy(
        update={
            "pending": is_pending(state_text),
            "ban": ban,
            "sessions": record_row.sessions,
            "voided": record_row.voided,
            "voided_sessions": [out for v in voided if (out := _voided(v.session_id, v))],
        }
    )


def player_routes() -> list[BaseRoute]:
    """The routes of players and moderation."""
    return [
        Route("/api/players/{user_id}", get_player, methods=["GET"]),
        Route("/api/players/{user_id}", put_player, methods=["PUT"]),
        Route("/api/players/{user_id}/ban", ban_player, methods=["POST"]),
        Route("/api/players/{user_id}/unban", unban_player, methods=["POST"]),
        Route("/api/sessions/{session_id}", void_session, methods=["DELETE"]),
        Route("/api/audit", audit_log, methods=["GET"]),
    ]
