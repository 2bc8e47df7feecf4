"""The routes of ranker/api/routes.py where no server is needed: what the metrics count."""

from __future__ import annotations

import socket

import httpx
from prometheus_client import REGISTRY

from ranker.api.app import create_app
from ranker.settings import Settings

WRITE_KEY = "w" * 24


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def submissions(outcome: str) -> float:
    value = REGISTRY.get_sample_value("ranker_submissions_total", {"outcome": outcome})
    return value or 0.0


async def test_a_submission_refused_because_redis_is_away_counts_as_unavailable() -> None:
    settings = Settings(
        redis_url=f"redis://127.0.0.1:{closed_port()}/0",
        api_keys=(WRITE_KEY,),
        write_rate_limit="",  # else the limiter's own Redis call refuses it before submit
        redis_timeout_s=0.5,
    )
    before = {name: submissions(name) for name in ("unavailable", "backlog_full", "error")}

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ranker") as client:
            answer = await client.post(
                "/api/leaderboard/submit",
                json={"user_id": 1, "score": 5},
                headers={"Authorization": f"Bearer {WRITE_KEY}"},
            )

    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert submissions("unavailable") == before["unavailable"] + 1
    assert submissions("backlog_full") == before["backlog_full"]  # a full backlog is another 503
    assert submissions("error") == before["error"]
