"""The last way ``ranker.dev.servers`` gets a server: a container, via testcontainers, when a
Docker engine answers (testcontainers is optional: imported only when this method is tried)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import psycopg
import redis

from ranker.dev.base import PG_FAST, PG_USER, START_TIMEOUT_S, Server, Skip, free_port, redis_client


@contextlib.contextmanager
def container(
    kind: str,
    data_dir: Path | None,
    port: int | None,
    appendonly: bool,
    server_settings: Mapping[str, str | int] | None = None,
) -> Iterator[Server]:
    """redis:7 or postgres:N in a container published on 127.0.0.1 only; data_dir is mounted.

    testcontainers is optional, hence imported here, not at the top; its Ryuk reaper removes the
    container if this process dies without stopping it.
    """
    try:
        # Optional (pip install testcontainers): imported only when this method is tried.
        from testcontainers.core.container import DockerContainer
        from testcontainers.core.docker_client import DockerClient

        with contextlib.closing(DockerClient().client) as client:
            client.ping()
    except ImportError as exc:
        raise Skip("testcontainers not installed") from exc
    except Exception as exc:  # docker-py raises several kinds when no engine answers
        raise Skip(f"no Docker engine answers ({type(exc).__name__})") from exc
    image, inner_port, command, env, mount = _spec(kind, data_dir, appendonly)
    for key, value in (server_settings or {}).items():
        # redis-server reads "--name value"; postgres "--name=value".
        command += [f"--{key}", str(value)] if kind == "redis" else [f"--{key}={value}"]
    container = DockerContainer(image, command=command, env=env)
    if data_dir is not None:
        container.with_volume_mapping(str(data_dir.resolve()), mount, "rw")
    host_port = port or free_port()
    # with_bind_ports() publishes on 0.0.0.0; docker-py's (ip, port) form keeps it on loopback.
    container.ports[f"{inner_port}/tcp"] = ("127.0.0.1", host_port)
    try:
        container.start()
    except Exception as exc:
        with contextlib.suppress(Exception):
            container.stop()
        raise Skip(f"{image} did not start ({type(exc).__name__}: {exc})") from exc
    try:
        where = data_dir.resolve() if data_dir is not None else None
        yield Server(_wait_url(kind, host_port), kind, "testcontainers", where)
    finally:
        container.stop()


def _spec(
    kind: str, data_dir: Path | None, appendonly: bool
) -> tuple[str, int, list[str], dict[str, str], str]:
    """(image, port inside, command, environment, data mount point) of a container for kind."""
    if kind == "redis":
        persist = ["--appendonly", "yes" if appendonly else "no"] if data_dir else ["--save", ""]
        # Inside it must listen on all interfaces; the host side is published on loopback only.
        command = ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", *persist]
        return "redis:7", 6379, command, {}, "/data"
    marker = data_dir / "PG_VERSION" if data_dir else None
    major = marker.read_text().strip() if marker and marker.exists() else "16"
    fast = [] if data_dir else [f"--{key}={value}" for key, value in PG_FAST.items()]
    pgdata = "/var/lib/postgresql/data"  # pinned: the postgres:18 image moved its default
    env = {"POSTGRES_HOST_AUTH_METHOD": "trust", "PGDATA": pgdata}
    return f"postgres:{major}", 5432, ["postgres", "--max_connections=200", *fast], env, pgdata


def _wait_url(kind: str, port: int) -> str:
    """Poll until a client connects (the postgres image restarts once on its first start)."""
    url = f"redis://127.0.0.1:{port}/0"
    if kind == "postgres":
        url = f"postgresql://{PG_USER}@127.0.0.1:{port}/postgres"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if kind == "redis":
                with redis_client(port) as client:
                    client.ping()
            else:
                psycopg.connect(url, connect_timeout=2).close()
            return url
        except (redis.ConnectionError, psycopg.OperationalError) as exc:
            if time.monotonic() > deadline:
                raise Skip(f"the container never answered ({exc})") from exc
            time.sleep(0.1)
