"""The request log and request ids (ranker.logs, ranker.api.access), on a real ``ranker serve``
with its worker: one line per request with its fields, an id followed from the request to its
answer, its problem body and the worker's line for the batch that persisted it; JSON lines
that parse; the switch that turns the lines off; a log file that rotates."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from ranker.settings import Settings
from tests.fixtures.ranker import WRITE_KEY, Processes, auth_headers, wait_for

SUBMIT = "/api/leaderboard/submit"
#: What a made-up id looks like (ranker.logs.new_request_id).
MADE_UP = re.compile(r"^[0-9a-f]{16}$")


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSON-lines log; each must parse (a line that does not fails the test)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def access_lines(path: Path) -> list[dict[str, Any]]:
    return [line for line in json_lines(path) if line["logger"] == "ranker.access"]


def session(user_id: int, score: int) -> dict[str, Any]:
    return {"user_id": user_id, "score": score, "session_id": str(uuid.uuid4())}


async def serve_logging(
    processes: Processes, make_settings: Callable[..., Settings], tmp_path: Path, **overrides: Any
) -> tuple[str, Path]:
    log_file = tmp_path / "ranker.log"
    settings = make_settings(log_format="json", log_file=log_file, **overrides)
    url, _ = await processes.serve(settings=settings)
    await wait_for(lambda: ready(url), 30, "the service to load its boards")
    return url, log_file


async def ready(url: str) -> bool:
    async with httpx.AsyncClient(base_url=url) as http:
        return (await http.get("/readyz")).status_code == 200


async def test_one_request_id_from_the_request_to_the_worker_batch_that_persisted_it(
    processes: Processes,
    make_settings: Callable[..., Settings],
    pool: AsyncConnectionPool,
    tmp_path: Path,
) -> None:
    url, log_file = await serve_logging(processes, make_settings, tmp_path)
    request_id = f"game-server-7/{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=url, headers=auth_headers()) as http:
        answer = await http.post(
            SUBMIT, json=session(41, 900), headers={"X-Request-ID": request_id}
        )
        refused_id = f"refused-{uuid.uuid4().hex[:8]}"
        refused = await http.post(
            SUBMIT, json={"user_id": 41, "score": -1}, headers={"X-Request-ID": refused_id}
        )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-request-id"] == request_id
    # An error's problem body names the id too, so a player's bug report carries it.
    assert refused.status_code == 422
    assert refused.headers["x-request-id"] == refused_id
    assert refused.json()["request_id"] == refused_id
    # A line the request causes besides its access line names it too: the refusal of a key.
    async with httpx.AsyncClient(base_url=url, headers=auth_headers("not-a-key")) as http:
        unknown = await http.post(
            SUBMIT, json=session(41, 1), headers={"X-Request-ID": "bad-key-1"}
        )
    assert unknown.status_code == 401 and unknown.json()["request_id"] == "bad-key-1"

    async def logged() -> bool:
        ids = {line["request_id"] for line in access_lines(log_file)}
        return {request_id, refused_id, "bad-key-1"} <= ids

    await wait_for(logged, 10, "the requests' log lines")
    (refusal,) = [
        line
        for line in json_lines(log_file)
        if line["request_id"] == "bad-key-1" and line["logger"] != "ranker.access"
    ]
    assert refusal["message"].startswith("refused POST /api/leaderboard/submit"), refusal
    lines = {line["request_id"]: line for line in access_lines(log_file)}
    line = lines[request_id]
    assert (line["method"], line["path"], line["status"]) == ("POST", SUBMIT, 200)
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["client"] == "127.0.0.1"
    assert line["key_id"] and line["key_id"] in line["message"]
    assert line["time"] and line["level"] == "INFO"
    assert lines[refused_id]["status"] == 422
    # The key itself is in no line, under any name.
    assert WRITE_KEY not in log_file.read_text(encoding="utf-8")

    async def batch_logged() -> bool:
        return any(
            request_id in line.get("request_ids", ())
            for line in json_lines(log_file)
            if line["logger"] == "ranker.worker.batches"
        )

    await wait_for(batch_logged, 15, "the worker's line for the batch that persisted it")
    (batch,) = [
        line
        for line in json_lines(log_file)
        if line["logger"] == "ranker.worker.batches" and request_id in line["request_ids"]
    ]
    assert batch["persisted"] >= 1 and request_id in batch["message"]
    # ... and that batch did persist it.
    async with pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) FROM game_sessions WHERE user_id = 41")
        assert await cur.fetchone() == (1,)
    # The refused one reached no batch: nothing of it was stored.
    assert not any(refused_id in line.get("request_ids", ()) for line in json_lines(log_file))


@pytest.mark.parametrize(
    "sent",
    [None, "", "has space", "x" * 65, "caf\u00e9"],
    ids=["none", "empty", "space", "too-long", "non-ascii"],
)
async def test_a_request_without_a_valid_id_gets_a_new_one(
    sent: str | None,
    processes: Processes,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    url, log_file = await serve_logging(processes, make_settings, tmp_path)
    headers = {} if sent is None else {"X-Request-ID": sent.encode()}
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.get("/api/leaderboard/top", headers=headers)
    made = answer.headers["x-request-id"]
    assert MADE_UP.match(made) and made != sent

    async def logged() -> bool:
        return any(line["request_id"] == made for line in access_lines(log_file))

    await wait_for(logged, 10, "the request's log line")


async def test_the_access_log_switched_off_writes_no_request_line(
    processes: Processes,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    url, log_file = await serve_logging(processes, make_settings, tmp_path, access_log=False)
    async with httpx.AsyncClient(base_url=url, headers=auth_headers()) as http:
        answer = await http.post(SUBMIT, json=session(5, 10))
    assert answer.status_code == 200
    assert MADE_UP.match(answer.headers["x-request-id"])  # ids stay on

    # The file is written all the same: the server's own lines are there, the request's not.
    async def started() -> bool:
        return any(line["logger"].startswith("uvicorn") for line in json_lines(log_file))

    await wait_for(started, 10, "the server's start-up lines in the file")
    loggers = {line["logger"] for line in json_lines(log_file)}
    assert "ranker.access" not in loggers and "ranker.worker.batches" not in loggers


async def test_text_lines_carry_the_same_fields(
    processes: Processes,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    log_file = tmp_path / "ranker.log"
    url, _ = await processes.serve(settings=make_settings(log_file=log_file))
    await wait_for(lambda: ready(url), 30, "the service to load its boards")
    async with httpx.AsyncClient(base_url=url, headers=auth_headers()) as http:
        await http.get("/api/leaderboard/rank/123456", headers={"X-Request-ID": "lookup-1"})

    def line() -> str | None:
        text = log_file.read_text(encoding="utf-8") if log_file.exists() else ""
        return next((row for row in text.splitlines() if "[lookup-1]" in row), None)

    async def logged() -> bool:
        return line() is not None

    await wait_for(logged, 10, "the request's text line")
    found = line()
    assert found is not None
    pattern = (
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO ranker\.access \[lookup-1\]: "
        r"GET /api/leaderboard/rank/123456 404 \d+\.\d\dms client=127\.0\.0\.1 key=\w+$"
    )
    assert re.match(pattern, found), found


async def test_the_log_file_rotates_by_size(
    processes: Processes,
    make_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    url, log_file = await serve_logging(
        processes, make_settings, tmp_path, log_file_max_bytes=4096, log_file_backups=2
    )
    async with httpx.AsyncClient(base_url=url) as http:
        for _ in range(120):
            await http.get("/healthz")
    rotated = [tmp_path / "ranker.log.1", tmp_path / "ranker.log.2"]

    async def both_rotated() -> bool:
        return all(path.exists() for path in rotated)

    await wait_for(both_rotated, 10, "two rotated files")
    assert not (tmp_path / "ranker.log.3").exists()  # backups beyond the setting are dropped
    for path in [log_file, *rotated]:
        assert path.stat().st_size <= 4096 + 1024  # one line may end a file past its bound
        json_lines(path)  # every line of every file parses
