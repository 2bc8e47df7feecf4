"""loadgen's progress on stderr: snapshots from the run's own recorder, the live bar, the plain
lines, and the hint, said once, when requests are refused (401, 403, 429)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from rich.console import Console

from loadgen import cli
from loadgen.progress import LINE_INTERVAL_S, Display, refusal_hint
from loadgen.runner import run_load
from loadgen.stats import Recorder, Snapshot
from tests.unit.test_loadgen import config, serve


def snap(elapsed_s: float, count: int = 0, **overrides: Any) -> Snapshot:
    values: dict[str, Any] = {
        "elapsed_s": elapsed_s,
        "count": count,
        "failed": 0,
        "dropped": 0,
        "p99_ms": 3.21,
        "refused": {},
        **overrides,
    }
    return Snapshot(**values)


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=160), out


def display(target: Console, mode: str = "auto", has_key: bool = True) -> Display:
    return Display(target, mode, warmup_s=1.0, duration_s=10.0, has_key=has_key)


# -- the snapshot -----------------------------------------------------------------------------


def test_a_snapshot_is_the_recorders_counts_and_p99_so_far() -> None:
    recorder = Recorder(["submit", "rank"], window_start=0.0)
    for ms in range(1, 101):
        recorder.response("rank", 200, began=0.0, ended=ms / 1000)
    recorder.response("submit", 401, began=0.0, ended=0.2)
    recorder.response("rank", 503, began=0.0, ended=0.2)
    recorder.transport_error(TimeoutError(), ended=0.3)
    recorder.dropped = 4

    snapshot = recorder.snapshot(elapsed_s=1.5, refused={("submit", 401): "no key"})

    assert (snapshot.count, snapshot.failed, snapshot.dropped) == (103, 3, 4)
    assert snapshot.p99_ms == recorder.total.summary()["p99"]
    assert snapshot.refused == {("submit", 401): "no key"}
    assert snapshot.final is False


async def test_the_watch_sees_the_run_and_its_last_snapshot_is_the_results() -> None:
    seen: list[Snapshot] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.json_response([])

    async with serve(answer) as url:
        # Long enough for the watch to be called on its interval at least once before the end.
        result = await run_load(config(url, workload="top", duration_s=0.8), watch=seen.append)

    assert len(seen) >= 2 and [s.final for s in seen] == [False] * (len(seen) - 1) + [True]
    assert [s.count for s in seen] == sorted(s.count for s in seen)
    last = seen[-1]
    assert (last.count, last.failed, last.dropped) == (result.count, 0, 0)
    assert last.p99_ms == result.latency_ms["p99"]


# -- the display ------------------------------------------------------------------------------


def test_auto_is_the_live_bar_on_a_terminal_and_lines_elsewhere() -> None:
    assert display(console(terminal=True)[0]).mode == "live"
    assert display(console(terminal=False)[0]).mode == "lines"
    with pytest.raises(ValueError, match="unknown progress mode"):
        display(console(terminal=False)[0], mode="fancy")


def test_off_a_terminal_a_plain_line_comes_every_few_seconds_and_none_at_the_end() -> None:
    target, out = console(terminal=False)
    watch = display(target)

    with watch:
        watch(snap(0.5))  # warm-up
        watch(snap(LINE_INTERVAL_S - 0.5, count=3500))
        watch(snap(LINE_INTERVAL_S + 0.1, count=4100))
        watch(snap(LINE_INTERVAL_S + 0.6, count=4600))
        watch(snap(3 * LINE_INTERVAL_S + 0.2, count=16_000, failed=2, dropped=1))  # late
        watch(snap(11.2, count=10_050, final=True))

    assert out.getvalue().splitlines() == [
        "loadgen: 5/11 s: 4,100 requests, 1,000 req/s, 0 errors, p99 3.21 ms",
        "loadgen: 15/11 s: 16,000 requests, 1,178 req/s, 2 errors, 1 dropped, p99 3.21 ms",
    ]
    assert "\x1b" not in out.getvalue()  # no escape codes in a log


def test_on_a_terminal_the_bar_shows_phase_elapsed_and_the_numbers() -> None:
    target, out = console(terminal=True)
    watch = display(target)

    with watch:
        watch(snap(0.5))
        assert "warm-up" in out.getvalue() and "nothing recorded yet" in out.getvalue()
        watch(snap(6.0, count=5000, failed=3))
        assert "measuring" in out.getvalue() and "6.0/11 s" in out.getvalue()
        assert "5,000 requests, 1,000 req/s, 3 errors, p99 3.21 ms" in out.getvalue()
        watch(snap(11.3, count=10_000, final=True))

    assert "done" in out.getvalue() and "11.0/11 s" in out.getvalue()
    assert "10,000 requests, 971 req/s" in out.getvalue()  # the final rate: the whole window


def test_no_progress_with_none_but_the_hints() -> None:
    target, out = console(terminal=True)
    watch = display(target, mode="none", has_key=False)

    with watch:
        watch(snap(6.0, count=5000))
        watch(snap(7.0, count=6000, refused={("submit", 401): "no key"}))

    assert out.getvalue().splitlines() == [refusal_hint("submit", 401, "no key", has_key=False)]


# -- refusals ---------------------------------------------------------------------------------

NO_KEY = "this request needs an API key: Authorization: Bearer <key>"
SPENT = "over the limit of this address of 10 failed authentications per 1 minute(s)"


def test_a_refusal_is_said_once_per_kind_and_status() -> None:
    target, out = console(terminal=False)
    watch = display(target, has_key=False)

    with watch:
        watch(snap(0.5, refused={("submit", 401): NO_KEY}))  # in the warm-up: said at once
        watch(snap(2.5, refused={("submit", 401): NO_KEY}))
        watch(snap(3.0, refused={("submit", 401): NO_KEY, ("submit", 429): SPENT}, final=True))

    assert out.getvalue().splitlines() == [
        refusal_hint("submit", 401, NO_KEY, has_key=False),
        refusal_hint("submit", 429, SPENT, has_key=False),
    ]


@pytest.mark.parametrize(
    ("status", "reason", "has_key", "says"),
    [
        (
            401,
            NO_KEY,
            False,
            f"submit refused 401 ({NO_KEY}): pass --api-key or set RANKER_API_KEY",
        ),
        (429, SPENT, False, f"submit refused 429 ({SPENT}): pass --api-key or set RANKER_API_KEY"),
        (401, "the API key is not valid", True, "(the API key is not valid): check the key of"),
        (403, "the API key 1f0c is a read key", True, "submit refused 403 (the API key 1f0c is"),
        (
            429,
            "over the limit of this key",
            True,
            "submit refused 429 (over the limit of this key)",
        ),
        (401, "", True, "submit refused 401: check the key of --api-key or RANKER_API_KEY"),
    ],
)
def test_the_hint_gives_the_reason_and_what_to_do(
    status: int, reason: str, has_key: bool, says: str
) -> None:
    hint = refusal_hint("submit", status, reason, has_key)

    assert hint.startswith("loadgen: ") and says in hint
    assert ("RANKER_API_KEY" in hint) == (status == 401 or not has_key)


def refuse_submits_without_a_key(first: int) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Like ranker without a key: 401 to the first ``first`` submits of the address, then 429."""
    refused = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal refused
        if not request.path.endswith("/submit") or "Authorization" in request.headers:
            return web.json_response([])
        refused += 1
        if refused <= first:
            return web.json_response({"title": "Unauthorized", "detail": NO_KEY}, status=401)
        return web.json_response({"title": "Too many requests", "detail": SPENT}, status=429)

    return handler


def said(stderr: str) -> list[str]:
    """loadgen's own lines on stderr (a log handler another test left may write there too)."""
    return [line for line in stderr.splitlines() if line.startswith("loadgen: ")]


async def test_a_run_without_a_key_says_once_why_submits_fail(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with serve(refuse_submits_without_a_key(first=3)) as url:
        argv = ["--url", url, "--mix", "submit=1,top=1", "--seed", "1", "--rate", "100"]
        argv += ["--duration", "0.3"]
        # The 401s all come in the warm-up, which records nothing: they are said all the same.
        status = await asyncio.to_thread(cli.main, [*argv, "--warmup", "0.2", "--api-key", ""])
        refused = capsys.readouterr()
        keyed = await asyncio.to_thread(cli.main, [*argv, "--warmup", "0", "--api-key", "k" * 20])
        accepted = capsys.readouterr()

    assert status == 1  # the refusals are still failed requests
    assert said(refused.err) == [
        refusal_hint("submit", 401, NO_KEY, has_key=False),
        refusal_hint("submit", 429, SPENT, has_key=False),
    ]
    # Not recorded: no 401 among the errors ("401" alone would match a figure, e.g. "34.01 ms").
    assert "errors     429: " in refused.out and "401:" not in refused.out
    assert keyed == 0 and said(accepted.err) == []


async def test_a_refusal_without_a_problem_body_is_said_without_a_reason() -> None:
    seen: list[Snapshot] = []

    async def forbidden(request: web.Request) -> web.StreamResponse:
        return web.Response(status=403, text="<html>no</html>")

    async with serve(forbidden) as url:
        await run_load(config(url, workload="top", duration_s=0.1), watch=seen.append)

    assert seen[-1].refused == {("top", 403): ""}
