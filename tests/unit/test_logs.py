"""ranker.logs: request ids, the formats, and the handlers ``configure`` installs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ranker import logs
from ranker.settings import Settings


@pytest.fixture
def restored_root() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("ranker.test", logging.INFO, __file__, 1, message, (), None)
    made.__dict__.update(extra)
    return made


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        ("abc-123", True),
        ("game-server-7/4f1c:9", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("", False),
        ("has space", False),
        ("tab\there", False),
        ("caf\u00e9", False),
        (None, False),
    ],
)
def test_which_incoming_ids_are_kept(value: str | None, kept: bool) -> None:
    assert logs.valid_request_id(value) is kept


def test_new_ids_are_valid_and_differ() -> None:
    made = {logs.new_request_id() for _ in range(1000)}
    assert len(made) == 1000
    assert all(logs.valid_request_id(value) and len(value) == 16 for value in made)


def test_a_record_names_the_request_it_was_logged_in() -> None:
    token = logs.request_id.set("req-1")
    try:
        inside = record("inside")
        logs.RequestIdFilter().filter(inside)
    finally:
        logs.request_id.reset(token)
    outside = record("outside")
    logs.RequestIdFilter().filter(outside)
    own = record("own", request_id="req-2")
    logs.RequestIdFilter().filter(own)

    assert (inside.request_id, outside.request_id, own.request_id) == ("req-1", "-", "req-2")


def test_json_lines_carry_the_fields_and_the_extras_as_keys() -> None:
    line = record("GET / 200", request_id="req-3", status=200, path="/")
    out = json.loads(logs.formatter("json").format(line))

    assert out["level"] == "INFO" and out["logger"] == "ranker.test" and out["time"]
    assert (out["request_id"], out["message"], out["status"], out["path"]) == (
        "req-3",
        "GET / 200",
        200,
        "/",
    )


def test_text_lines_name_the_request_id() -> None:
    line = record("hello", request_id="req-4")
    assert logs.formatter("text").format(line).endswith("INFO ranker.test [req-4]: hello")


def test_configure_twice_replaces_its_own_handlers_and_keeps_others(
    restored_root: logging.Logger, tmp_path: Path
) -> None:
    other = logging.NullHandler()
    restored_root.addHandler(other)
    settings = Settings(log_file=tmp_path / "ranker.log", log_level="warning")

    logs.configure(settings)
    logs.configure(settings)

    ours = [h for h in restored_root.handlers if h.get_name() == logs.HANDLER_NAME]
    assert len(ours) == 2  # stderr and the file, once each
    assert other in restored_root.handlers
    assert restored_root.level == logging.WARNING
    restored_root.removeHandler(other)


def test_the_stderr_handler_writes_to_the_stderr_of_the_moment(
    restored_root: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs.configure(Settings())
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    logging.getLogger("ranker.test").warning("one")
    monkeypatch.setattr("sys.stderr", second)
    logging.getLogger("ranker.test").warning("two")

    assert "one" in first.getvalue() and "two" not in first.getvalue()
    assert "two" in second.getvalue()


def test_access_lines_of_one_loop_turn_reach_stderr_together_in_order_at_the_next_turn(
    restored_root: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs.configure(Settings())
    stream = io.StringIO()
    writes: list[str] = []
    real_write = stream.write
    monkeypatch.setattr(stream, "write", lambda text: writes.append(text) or real_write(text))
    monkeypatch.setattr("sys.stderr", stream)
    logger = logging.getLogger(logs.ACCESS_LOGGER)

    async def one_turn() -> str:
        for n in range(5):
            logger.warning("line %d", n)
        held = stream.getvalue()
        await asyncio.sleep(0)  # the next turn: the handler's flush runs before this resumes
        return held

    held = asyncio.run(one_turn())

    assert held == ""  # nothing written within the turn that logged
    assert len(writes) == 1  # one write for the five lines
    lines = stream.getvalue().splitlines()
    assert [line.rsplit(": ", 1)[1] for line in lines] == [f"line {n}" for n in range(5)]


def test_other_lines_are_written_at_once_after_the_waiting_ones(
    restored_root: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs.configure(Settings())
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    access = logging.getLogger(logs.ACCESS_LOGGER)
    other = logging.getLogger("uvicorn.error")

    async def in_one_turn() -> str:
        access.info("request")  # waits for the loop's next turn
        other.info("shutdown")  # a process's last line: written now, after the waiting one
        from_thread = threading.Thread(target=access.warning, args=("thread",))
        from_thread.start()
        from_thread.join()  # no loop runs in the thread: written now too
        return stream.getvalue()

    written = asyncio.run(in_one_turn())

    lines = [line.rsplit(": ", 1)[1] for line in written.splitlines()]
    assert lines == ["request", "shutdown", "thread"]
