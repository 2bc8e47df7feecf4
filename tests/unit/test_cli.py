"""The options and settings of every ``ranker`` command (ranker/cli/main.py): a bad value is
refused with exit 2 and one line naming it, before anything connects anywhere; a configuration
the service cannot start with is one line and exit 1, not a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ranker.cli.main import main

WRITE_KEY = "k" * 24


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting of the machine's reaches these tests."""
    for name in list(os.environ):
        if name.startswith("RANKER_") or name in ("REDIS_URL", "DATABASE_URL", "PORT"):
            monkeypatch.delenv(name)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    """``ranker <argv>`` in this process: its exit status and the lines it wrote to stderr."""
    try:
        status = main(list(argv))
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    return status, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (("serve", "--port", "0"), "--port"),
        (("serve", "--port", "65536"), "--port"),
        (("serve", "--port", "http"), "--port"),
        (("serve", "--workers", "0"), "--workers"),
        (("worker", "--batch", "5"), "unrecognized arguments: --batch"),
        (("migrate", "now"), "unrecognized arguments: now"),
        (("rebuild", "--wait-s", "-1"), "--wait-s"),
        (("rebuild", "--wait-s", "nan"), "--wait-s"),
        (("verify", "--wait-s", "inf"), "--wait-s"),
        (("verify", "--wait-s", "soon"), "--wait-s"),
        (("seed", "--players", "-5"), "--players"),
        (("seed", "--players", "0"), "--players"),
        (("seed", "--sessions", "-1"), "--sessions"),
        (("seed", "--players", "1e3"), "--players"),
        (("dev", "--port", "70000"), "--port"),
        (("dev", "--players", "0"), "--players"),
        (("healthcheck", "--max-age-s", "-3"), "--max-age-s"),
    ],
)
def test_a_bad_option_is_refused_in_one_line_that_names_it(
    capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], option: str
) -> None:
    status, errors = run(capsys, *argv)

    assert status == 2
    assert len(errors) == 1, errors
    # An argument no command knows is the top parser's to refuse.
    by = "ranker" if "unrecognized" in option else f"ranker {argv[0]}"
    assert errors[0].startswith(f"{by}: ")
    assert option in errors[0]


def test_an_unknown_command_is_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    status, errors = run(capsys, "loadgen", "--rate", "5")  # the load generator is not a command

    assert status == 2 and len(errors) == 1 and "invalid choice: 'loadgen'" in errors[0]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RANKER_LOG_LEVEL", "loud"),
        ("RANKER_PORT", "eighty"),
        ("RANKER_MAX_BACKLOG", "0"),
        ("RANKER_GAME_MODES", "solo,Not A Mode"),
        ("RANKER_WRITE_RATE_LIMIT", "lots"),
        ("RANKER_SESSIONS_RETENTION_MONTHS", "0"),
        ("RANKER_SESSIONS_RETENTION_MONTHS", "a year"),
    ],
)
def test_a_bad_setting_is_one_line_that_names_the_variable(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)

    status, errors = run(capsys, "verify")

    assert status == 2
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"ranker: invalid settings: {variable}: ")


def test_a_setting_is_never_echoed_back(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANKER_MAX_BODY_BYTES", "secret-looking-value")

    status, errors = run(capsys, "verify")

    assert status == 2 and len(errors) == 1
    assert "secret-looking-value" not in errors[0]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_without_an_api_key_is_one_line(
    capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    status, errors = run(capsys, "serve", "--workers", workers, "--port", "1")

    assert status == 1
    assert errors == [
        "ranker serve: no API key is configured: set RANKER_API_KEYS or RANKER_API_KEY_FILE "
        "(`ranker dev` and `make run` make a development key)"
    ]


def test_healthcheck_without_a_url_or_a_heartbeat_file_says_so(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, errors = run(capsys, "healthcheck")

    assert (status, errors) == (
        1,
        ["ranker healthcheck: no --url, and RANKER_HEARTBEAT_FILE is not set"],
    )


def test_dev_without_a_way_to_start_its_servers_is_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RANKER_DEVSERVERS", "docker")  # the only way tried; no engine answers
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")

    status, errors = run(capsys, "dev")

    assert status == 1
    assert len(errors) == 1 and errors[0].startswith("ranker dev: no redis server could be started")
