"""A throwaway Redis Cluster on 127.0.0.1: ``redis-server`` processes with ``cluster-enabled
yes``, joined by ``redis-cli --cluster create`` (three primaries and three replicas by default),
for the tests and the benchmark (docs/design.md, "Redis Cluster").

Only the local binaries: the cluster needs ``redis-cli`` beside ``redis-server`` (Debian's
redis-server package has both; valkey's are ``valkey-cli`` / ``valkey-server``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis

from ranker.dev.base import START_TIMEOUT_S, Skip, free_port, redis_client, run_tool
from ranker.dev.redis_local import redis_executable, redis_process

#: How long a primary may be unreachable before its replica takes over: low, so that a test's
#: failover completes in a second or two (Redis's default is 15 s).
NODE_TIMEOUT_MS = 1000


@dataclass
class LocalCluster:
    """A running local cluster: its ``redis+cluster://`` URL and its nodes' ports."""

    url: str
    ports: list[int]
    how: str
    #: The node ids by port, as ``CLUSTER MYID`` gave them at the start.
    ids: dict[int, str] = field(default_factory=dict)
    #: Starts one more node (it runs until the cluster stops) and returns its port.
    start_node: Callable[[], int] | None = None
    cli: str = "redis-cli"

    def add_replica(self, primary: int) -> int:
        """Start a node and join it to the cluster as a replica of the primary on ``primary``
        (``redis-cli --cluster add-node --cluster-slave``); its port once it has synced."""
        assert self.start_node is not None
        port = self.start_node()
        with redis_client(primary) as client:
            primary_id = client.execute_command("CLUSTER MYID").decode()
        run_tool(
            "redis-cli --cluster add-node",
            [
                *(self.cli, "--cluster", "add-node", f"127.0.0.1:{port}", f"127.0.0.1:{primary}"),
                *("--cluster-slave", "--cluster-master-id", primary_id),
            ],
            START_TIMEOUT_S,
        )
        self.ports.append(port)
        self.wait_healthy()
        _wait_replicas_linked([port])
        return port

    def primaries(self) -> list[int]:
        """The ports of the nodes that are primaries now (those that answer)."""
        return [port for port in self.ports if self.role(port) == "master"]

    def role(self, port: int) -> str | None:
        """``master`` or ``slave`` as the node says (``ROLE``), None when it does not answer."""
        with contextlib.suppress(redis.RedisError), redis_client(port) as client:
            return str(client.execute_command("ROLE")[0].decode())
        return None

    def primary_of(self, key: str) -> int:
        """The port of the primary that serves ``key``'s slot, as the first node that answers
        sees it (wait for ``wait_healthy`` after a failover before trusting it)."""
        for port in self.ports:
            with contextlib.suppress(redis.RedisError), redis_client(port) as client:
                slot = int(client.execute_command("CLUSTER KEYSLOT", key))
                return _slots_owner(client, slot)[1]
        raise LookupError("no node of the cluster answers")

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port`` (a crash: nothing flushed, no goodbye to the cluster)."""
        with redis_client(port) as client:
            pid = int(client.info("server")["process_id"])
        os.kill(pid, signal.SIGKILL)

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until every node that answers says ``cluster_state:ok`` and knows one primary per
        slot range; ``Skip`` (with what it saw) after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        seen = "no answer"
        while time.monotonic() < deadline:
            states = []
            for port in self.ports:
                with contextlib.suppress(redis.RedisError), redis_client(port) as client:
                    states.append(client.cluster("INFO")["cluster_state"])
            if states and all(state == "ok" for state in states):
                return
            seen = ", ".join(states) or seen
            time.sleep(0.05)
        raise Skip(f"the cluster is not ok within {timeout_s:.0f}s ({seen})")


def _slots_owner(client: redis.Redis, slot: int) -> tuple[str, int]:
    for start, end, primary, *_ in client.execute_command("CLUSTER SLOTS"):  # type: ignore[no-untyped-call]
        if start <= slot <= end:
            return primary[0].decode(), int(primary[1])
    raise LookupError(f"slot {slot} is not served")


def cli_executable(server_exe: str) -> str:
    """The ``redis-cli`` (or ``valkey-cli``) that comes with ``server_exe``; Skip when none."""
    folder = Path(server_exe).parent
    for name in ("redis-cli", "valkey-cli"):
        for candidate in (folder / name, Path(shutil.which(name) or "/nonexistent")):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise Skip(f"no redis-cli or valkey-cli beside {server_exe} or on PATH")


@contextlib.contextmanager
def redis_cluster(
    primaries: int = 3,
    replicas: int = 1,
    *,
    node_timeout_ms: int = NODE_TIMEOUT_MS,
    server_settings: Mapping[str, str | int] | None = None,
) -> Iterator[LocalCluster]:
    """Run a throwaway cluster of ``primaries`` primaries with ``replicas`` replicas each for the
    block; its data lives in temporary directories (no RDB, no AOF). Skip when the binaries are
    missing or the cluster does not form."""
    exe, how = redis_executable("binary")
    cli = cli_executable(exe)
    settings: dict[str, str | int] = {
        "cluster-enabled": "yes",
        "cluster-config-file": "nodes.conf",
        "cluster-node-timeout": node_timeout_ms,
        # A replica whose link broke a moment ago may still be promoted: the tests kill
        # primaries under load, and a stricter validity would leave the slots without a primary.
        "cluster-replica-validity-factor": 0,
        **dict(server_settings or {}),
    }
    with contextlib.ExitStack() as stack:

        def start_node() -> int:
            port = free_port()
            # The bus port is the data port + 10000 by default, past 65535 for a high free
            # port: each node gets a bus port of its own instead.
            own = {**settings, "cluster-port": free_port()}
            stack.enter_context(redis_process(exe, how, None, port, False, own))
            return port

        ports = [start_node() for _ in range(primaries * (1 + replicas))]
        nodes = [f"127.0.0.1:{port}" for port in ports]
        run_tool(
            "redis-cli --cluster create",
            [
                cli,
                "--cluster",
                "create",
                *nodes,
                "--cluster-replicas",
                str(replicas),
                "--cluster-yes",
            ],
            START_TIMEOUT_S,
        )
        seeds = ",".join(nodes[:primaries])
        cluster = LocalCluster(
            f"redis+cluster://{seeds}", ports, f"{how} cluster", start_node=start_node, cli=cli
        )
        cluster.wait_healthy()
        _wait_replicas_linked(ports)
        _wait_layout_known(ports, 1 + replicas)
        for port in ports:
            with redis_client(port) as client:
                cluster.ids[port] = client.execute_command("CLUSTER MYID").decode()
        yield cluster


def _wait_layout_known(ports: list[int], per_range: int) -> None:
    """Until every node's ``CLUSTER SLOTS`` lists ``per_range`` nodes for each slot range: a
    client learns the layout once, from one node, and one that had not heard of a replica yet
    would never send it a read."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        sizes = set()
        for port in ports:
            with redis_client(port) as client:
                ranges = client.execute_command("CLUSTER SLOTS")
            sizes |= {len(entry) - 2 for entry in ranges}
        if sizes == {per_range}:
            return
        time.sleep(0.05)
    raise Skip(f"the nodes did not all learn the cluster's replicas ({sorted(sizes)})")


def _wait_replicas_linked(ports: list[int]) -> None:
    """Until every replica's link to its primary is up (a failover needs a synced replica)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        down = []
        for port in ports:
            with redis_client(port) as client:
                info = client.info("replication")
            if info["role"] == "slave" and info.get("master_link_status") != "up":
                down.append(port)
        if not down:
            return
        time.sleep(0.05)
    raise Skip(f"replicas on ports {down} did not link to their primaries")
