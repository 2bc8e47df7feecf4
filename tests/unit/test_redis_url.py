"""What a RANKER_REDIS_URL names (ranker.redis_url), how the settings check it, and which
cluster replies become a 503 (ranker.connections)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from redis import exceptions as redis_errors

from ranker.connections import translate_redis_errors
from ranker.errors import RedisUnavailable
from ranker.redis_url import ClusterURL, is_cluster, parse_redis_url
from ranker.settings import Settings


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://user:secret@cache:6380/2", "unix:///tmp/r.sock"]
)
def test_a_one_server_url_is_not_a_cluster(url: str) -> None:
    assert parse_redis_url(url) is None
    assert not is_cluster(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+cluster://10.0.0.1:7000,10.0.0.2:7001",
            ClusterURL("redis://10.0.0.1:7000", (("10.0.0.1", 7000), ("10.0.0.2", 7001))),
        ),
        (
            "rediss+cluster://app:s3cret@a.example:6379,b.example:6379/0?ssl_cert_reqs=none",
            ClusterURL(
                "rediss://app:s3cret@a.example:6379/0?ssl_cert_reqs=none",
                (("a.example", 6379), ("b.example", 6379)),
            ),
        ),
        (
            "REDIS+CLUSTER://[::1]:7000,[::1]:7001",
            ClusterURL("redis://[::1]:7000", (("::1", 7000), ("::1", 7001))),
        ),
    ],
)
def test_a_cluster_url_gives_its_nodes_and_the_first_nodes_url(
    url: str, expected: ClusterURL
) -> None:
    assert parse_redis_url(url) == expected
    assert is_cluster(url)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://cache:6379", "not a Redis URL"),
        ("cache:6379", "not a Redis URL"),
        ("redis+cluster://", "host:port"),
        ("redis+cluster://a:7000,b", "host:port"),
        ("redis+cluster://a:70000", "host:port"),
        ("redis+cluster://a:7000/3", "database 0"),
    ],
)
def test_a_wrong_url_is_refused_naming_what_is_wrong_and_never_the_password(
    url: str, says: str
) -> None:
    with pytest.raises(ValueError, match=says) as refused:
        parse_redis_url(url.replace("://", "://user:hunter2@", 1))
    assert "hunter2" not in str(refused.value)
    with pytest.raises(ValidationError, match="redis_url"):
        Settings(redis_url=url)


def test_replica_reads_need_a_cluster() -> None:
    with pytest.raises(ValueError, match="RANKER_READ_FROM_REPLICAS needs a Redis Cluster"):
        Settings(redis_url="redis://127.0.0.1:6379/0", read_from_replicas=True)
    assert Settings(redis_url="redis+cluster://a:7000", read_from_replicas=True).read_from_replicas


@pytest.mark.parametrize(
    "error",
    [
        redis_errors.ClusterDownError("The cluster is down"),
        redis_errors.MasterDownError("Link with MASTER is down"),
        redis_errors.TryAgainError("Multiple keys request during rehashing of slot"),
        redis_errors.MovedError("3999 127.0.0.1:6381"),
        redis_errors.AskError("3999 127.0.0.1:6381"),
        redis_errors.SlotNotCoveredError("Slot 3999 not covered by the cluster"),
        redis_errors.ReadOnlyError("You can't write against a read only replica."),
        redis_errors.MaxConnectionsError("Too many connections"),
    ],
)
def test_a_cluster_between_layouts_is_a_503_not_a_bug(error: Exception) -> None:
    with pytest.raises(RedisUnavailable), translate_redis_errors():
        raise error


def test_other_redis_errors_still_pass_as_bugs() -> None:
    with pytest.raises(redis_errors.ResponseError), translate_redis_errors():
        raise redis_errors.ResponseError("WRONGTYPE Operation against a key holding the wrong kind")


async def test_a_write_on_a_connection_closed_under_redis_py_is_a_503() -> None:
    """redis-py 8.1 leaks the transport's AttributeError when a connection was closed under
    it (redis/redis-py#4287); ranker's own AttributeErrors stay bugs."""
    from redis.asyncio.connection import Connection

    connection = Connection()
    connection._writer = None  # as closed by another task meanwhile
    connection._reader = object()  # type: ignore[assignment]  # "connected"
    with pytest.raises(RedisUnavailable), translate_redis_errors():
        await connection._send_packed_command([b"PING\r\n"])
    with pytest.raises(AttributeError), translate_redis_errors():
        None.writelines  # type: ignore[attr-defined]  # noqa: B018
