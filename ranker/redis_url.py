"""What a ``RANKER_REDIS_URL`` names: one server, or a Redis Cluster and the nodes to start
from (docs/design.md, "Redis Cluster").

One server: redis-py's own forms, ``redis://``, ``rediss://`` (TLS) and ``unix://``. A cluster:
``redis+cluster://[user:password@]host:port[,host:port...][/0][?options]`` and
``rediss+cluster://`` for TLS; the hosts are where the client first asks for the cluster's
layout (any reachable node will do; list several so that one down at start-up does not matter).
A cluster has only database 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

#: The cluster schemes and the plain scheme each one's nodes are reached with.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
_SINGLE_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class ClusterURL:
    """A cluster URL taken apart: ``node_url`` is redis-py's URL of the first node (with the
    credentials, database and options of the whole), ``nodes`` every ``(host, port)`` given."""

    node_url: str
    nodes: tuple[tuple[str, int], ...]


def is_cluster(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster."""
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def parse_redis_url(url: str) -> ClusterURL | None:
    """``ClusterURL`` for a cluster URL, None for a one-server URL; ``ValueError`` naming what is
    wrong (never the URL itself, which may hold a password)."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in (*CLUSTER_SCHEMES, *_SINGLE_SCHEMES):
        raise ValueError(
            "not a Redis URL: expected redis://, rediss://, unix://, redis+cluster:// or "
            "rediss+cluster://"
        )
    if scheme not in CLUSTER_SCHEMES:
        return None
    hosts_end = min((rest.find(c) for c in "/?#" if c in rest), default=len(rest))
    netloc, tail = rest[:hosts_end], rest[hosts_end:]
    userinfo, at, hosts = netloc.rpartition("@")
    nodes = []
    for part in hosts.split(","):
        host, colon, port = part.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("a cluster URL lists its nodes as host:port[,host:port...]")
        nodes.append((host.strip("[]"), int(port)))
    path = urlsplit(f"x://h{tail}").path
    if path not in ("", "/", "/0"):
        raise ValueError("a Redis Cluster has only database 0: the URL's path must be /0 or none")
    first_host, first_port = nodes[0]
    shown = f"[{first_host}]" if ":" in first_host else first_host
    node_url = f"{CLUSTER_SCHEMES[scheme]}://{userinfo}{at}{shown}:{first_port}{tail}"
    return ClusterURL(node_url, tuple(nodes))
