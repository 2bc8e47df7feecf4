"""The edge phase of ``make bench``: what the HTTP stack and the abuse limits cost.

ranker's app behind each HTTP/1.1 stack on offer: the guarded protocol ``ranker serve`` runs
(``ranker.api.protocol``), uvicorn's own httptools protocol that it replaced (no deadlines, no
caps: the previous edge) and uvicorn's h11 protocol (pure Python, pipelining paused by design);
ranker with its per-process read limits off, and with its request log off; and the floor app
behind the first two, so that the gain or loss of the server is told apart from that of ranker's
own code. Each variant's maximum
rank and submit throughput (closed loop), in rounds that alternate the variants so that all of
them see the same moments of a machine whose speed drifts; the median round is reported.

Every ranker variant runs without its write-behind worker (the stream holds the submissions;
``ranker worker --burst`` persists them afterwards), so that no variant pays for another's.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from loadgen.bench.stack import Service, Stack, ranker_command
from ranker.dev import servers as devservers

#: The limits are on in every other variant, as deployed (far above the load: never refusing).
NO_READ_LIMITS = {"RANKER_ADDRESS_READ_LIMIT": "", "RANKER_TOTAL_READ_LIMIT": ""}
#: The request log is on in every other variant, as deployed (to the service's log file).
NO_ACCESS_LOG = {"RANKER_ACCESS_LOG": "false"}
#: The variants measured on rank alone.
RANK_ONLY = ("floor", "limits off", "request log off")


def _uvicorn(stack: Stack, app: str, http: str, env: dict[str, str], key: str | None) -> Service:
    """``app`` under the uvicorn command line with the ``http`` protocol, ranker's uvicorn
    settings otherwise (no access log, no server header)."""
    port = devservers.free_port()
    argv = [sys.executable, "-m", "uvicorn", "--factory", app, "--port", str(port)]
    argv += ["--http", http, "--ws", "none", "--no-access-log", "--no-server-header"]
    argv += ["--log-level", "warning"]
    ready = "/readyz" if app.startswith("ranker") else "/api/leaderboard/top"
    return Service(argv, stack.env(**env), port, ready, key)


def variants(stack: Stack, board_key: str) -> dict[str, Callable[[], Service]]:
    """Each variant's name and how to start it."""
    no_worker = {"RANKER_SERVE_NO_WORKER": "1"}
    floor_env = {"FLOOR_REDIS_URL": stack.redis_url, "FLOOR_BOARD": board_key}
    guarded = "ranker.api.protocol:GuardedProtocol"
    ranker_app = "ranker.cli.serve:app"
    key = stack.api_key
    return {
        "ranker, guarded edge (`ranker serve`)": lambda: Service.ranker(stack, "--no-worker"),
        "ranker, uvicorn httptools (previous edge)": lambda: _uvicorn(
            stack, ranker_app, "httptools", no_worker, key
        ),
        "ranker, uvicorn h11": lambda: _uvicorn(stack, ranker_app, "h11", no_worker, key),
        "ranker, guarded edge, read limits off": lambda: Service.ranker(
            stack, "--no-worker", **NO_READ_LIMITS
        ),
        "ranker, guarded edge, request log off": lambda: Service.ranker(
            stack, "--no-worker", **NO_ACCESS_LOG
        ),
        "floor app, guarded edge": lambda: _uvicorn(
            stack, "loadgen.bench.floor:app", guarded, floor_env, None
        ),
        "floor app, uvicorn httptools": lambda: _uvicorn(
            stack, "loadgen.bench.floor:app", "httptools", floor_env, None
        ),
    }


def edge_phase(
    stack: Stack,
    board_key: str,
    measure: Callable[[Service, str], dict[str, Any]],
    repeats: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """``{variant: {workload: [every round's run]}}``; ``measure(service, workload)`` is one
    closed-loop run after its warm-up."""
    rounds: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for n in range(repeats):
        for name, start in variants(stack, board_key).items():
            workloads = ("rank",) if any(part in name for part in RANK_ONLY) else None
            service = start()
            try:
                for workload in workloads or ("rank", "submit"):
                    say(f"edge: {name}, {workload} at its maximum, round {n + 1}")
                    figures = measure(service, workload)
                    rounds.setdefault(name, {}).setdefault(workload, []).append(figures)
            finally:
                service.stop()
    say("edge: persisting what the variants accepted (ranker worker --burst)")
    ranker_command(stack, "worker", "--burst")
    return rounds
