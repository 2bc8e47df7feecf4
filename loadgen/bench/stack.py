"""The benchmark's stack: fresh local Redis and PostgreSQL, and ranker (or the floor app) as
separate processes whose CPU time is measured."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from ranker.api.auth import new_key
from ranker.dev import servers as devservers
from ranker.dev.stack import ensure_database

#: PostgreSQL memory and WAL sized for a million players on this machine (a throwaway cluster:
#: the benchmark measures ranker, not checkpoints of a 128 MB default buffer pool).
BENCH_POSTGRES: Mapping[str, str | int] = {
    "shared_buffers": "2GB",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "1h",
    "wal_level": "minimal",
    "max_wal_senders": 0,
}
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Stack:
    """Where the servers are, as the environment of a ranker process."""

    redis_url: str
    database_url: str
    api_key: str = field(default_factory=new_key, repr=False)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a ranker process on this stack. The rate limits are far above
        any load the benchmark offers (which comes from one address): their checks run on
        every request, as deployed, but never refuse one. The log level is the default
        (info), so the request log writes its line per request as deployed: at "warning" (the
        level of runs before this one) its lines were dropped unformatted and it was not
        measured at all."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RANKER_")}
        env |= {"RANKER_REDIS_URL": self.redis_url, "RANKER_DATABASE_URL": self.database_url}
        env |= {"RANKER_API_KEYS": self.api_key, "RANKER_WRITE_RATE_LIMIT": "1000000/second"}
        env |= {
            "RANKER_ADDRESS_READ_LIMIT": "1000000/second",
            "RANKER_TOTAL_READ_LIMIT": "1000000/second",
        }
        return env | {"RANKER_LOG_LEVEL": "info", **extra}


@contextlib.contextmanager
def local_stack() -> Iterator[Stack]:
    """Fresh throwaway Redis and PostgreSQL servers, stopped on exit."""
    with (
        devservers.redis_server() as redis,
        devservers.postgres_server(server_settings=BENCH_POSTGRES) as postgres,
    ):
        yield Stack(redis.url, ensure_database(postgres.url, "ranker"))


def ranker_command(stack: Stack, *args: str, **env: str) -> Any:
    """Run ``ranker <args> --json`` (or a command without JSON), with ``env`` added to the
    stack's environment, and return its parsed output."""
    result = subprocess.run(
        [sys.executable, "-m", "ranker", *args],
        env=stack.env(**env),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ranker {' '.join(args)} failed: {result.stderr.strip()[-500:]}")
    return json.loads(result.stdout) if "--json" in args else result.stdout


class Service:
    """An HTTP service in its own process: started, waited for, measured, stopped."""

    def __init__(
        self,
        argv: list[str],
        env: Mapping[str, str],
        port: int,
        ready: str,
        api_key: str | None = None,
    ) -> None:
        self.api_key = api_key  # what the load generator presents
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._log = Path(f"/tmp/ranker-bench-{port}.log")
        with self._log.open("wb") as log:
            self.process = subprocess.Popen(argv, env=dict(env), stdout=log, stderr=log)
        #: Processes of the service besides the HTTP one (a separate ``ranker worker``): their
        #: CPU counts in ``cpu_s``, and ``stop`` stops them after it.
        self.companions: list[subprocess.Popen[bytes]] = []
        try:
            self._wait(ready)
        except BaseException:
            self.stop()  # a service that never answered must not outlive the run
            raise
        self._ps = [psutil.Process(self.process.pid)]

    @classmethod
    def ranker(cls, stack: Stack, *args: str, **env: str) -> Service:
        """``ranker serve`` on a free port, once its boards are loaded."""
        port = devservers.free_port()
        argv = [sys.executable, "-m", "ranker", "serve", "--port", str(port), *args]
        return cls(argv, stack.env(**env), port, "/readyz", stack.api_key)

    @classmethod
    def ranker_with_worker(cls, stack: Stack, *args: str, **env: str) -> Service:
        """``ranker serve --no-worker`` and one ``ranker worker`` beside it, both on the
        stack's environment (the worker at its default settings), as ``compose.yaml`` deploys
        them; returned once the API's boards are loaded and the worker's loop runs."""
        service = cls.ranker(stack, "--no-worker", *args, **env)
        try:
            service.add_worker(stack, **env)
        except BaseException:
            service.stop()
            raise
        return service

    def add_worker(self, stack: Stack, **env: str) -> None:
        """Start a ``ranker worker`` as a companion, and wait for its first heartbeat (the
        file ``compose.yaml`` sets too: touched once its loop runs, every second after)."""
        beat = Path(f"/tmp/ranker-bench-{self.port}-worker.alive")
        beat.unlink(missing_ok=True)
        log_path = Path(f"/tmp/ranker-bench-{self.port}-worker.log")
        worker_env = stack.env(RANKER_HEARTBEAT_FILE=str(beat), **env)
        with log_path.open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "ranker", "worker"], env=worker_env, stdout=log, stderr=log
            )
        self.companions.append(worker)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not beat.exists():
            if worker.poll() is not None:
                raise RuntimeError(f"ranker worker exited: {log_path.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"ranker worker did not start in {READY_TIMEOUT_S} s")
            time.sleep(0.1)
        self._ps.append(psutil.Process(worker.pid))

    @classmethod
    def floor(
        cls, stack: Stack, board_key: str, submit: str | None = None, stock: bool = False
    ) -> Service:
        """The floor app on the same Redis, on ranker's server (uvicorn with ranker's HTTP
        protocol, ``ranker.api.protocol``), or with ``stock`` on uvicorn's own: the two tell
        the server's part of a gain from ranker's code's. With ``submit`` (the JSON of
        ``loadgen.bench.floor``'s ``FLOOR_SUBMIT``), its submit route too."""
        port = devservers.free_port()
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "loadgen.bench.floor:app",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        if not stock:
            argv += ["--http", "ranker.api.protocol:GuardedProtocol"]
        env = stack.env(FLOOR_REDIS_URL=stack.redis_url, FLOOR_BOARD=board_key)
        if submit is not None:
            env["FLOOR_SUBMIT"] = submit
        return cls(argv, env, port, "/api/leaderboard/top")

    def _wait(self, path: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.url} exited: {self._log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(self.url + path, timeout=2) as response:
                    if response.status == 200:
                        return
            time.sleep(0.1)
        raise RuntimeError(f"{self.url}{path} did not answer 200 in {READY_TIMEOUT_S} s")

    def cpu_s(self) -> float:
        """CPU time (user + system) the service's processes (the HTTP one and its companions,
        each with its children) have used so far."""
        return sum(tree_cpu_s(process) for process in self._ps)

    def stop(self) -> None:
        """SIGTERM (graceful), then wait: the HTTP process first, so that no submission
        arrives after its worker has stopped, then the companions."""
        for process in (self.process, *self.companions):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def tree_cpu_s(process: psutil.Process) -> float:
    """CPU time (user + system) of ``process`` and of its children: the live ones, and the
    ones it has waited for (the kernel adds their times to its ``children_*``: a PostgreSQL
    backend that exits during a measurement still counts). 0 for a process that is gone."""
    total = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        for member in [process, *process.children(recursive=True)]:
            # A child that ended between the listing and its reading counts once its parent
            # has reaped it (in the parent's children_* at the next reading).
            with contextlib.suppress(psutil.NoSuchProcess):
                times = member.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
    return total


def postmaster(stack: Stack) -> psutil.Process | None:
    """The PostgreSQL server process of ``stack`` (its backends are its children): the
    ``postgres`` process started with the stack's port (``pg_ctl -o --port=N``); ``None`` when
    it is not a process of this machine (a container) or cannot be read."""
    port = stack.database_url.rsplit(":", 1)[1].split("/")[0]
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = process.info["cmdline"] or []
        if process.info["name"] == "postgres" and f"--port={port}" in cmdline:
            return process
    return None
