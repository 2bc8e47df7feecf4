"""The checked value types of ``ranker.settings``: each parses or refuses one kind of value,
with a message that names what was expected (a setting's name is added by pydantic)."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from limits import parse_many
from pydantic import AfterValidator, BeforeValidator
from pydantic_settings import NoDecode

from ranker.redis_url import parse_redis_url


def split_list(value: object) -> object:
    """``a, b,c`` as ``("a", "b", "c")`` (empty parts dropped); other values as they are."""
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return value


def _percent(value: object) -> object:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage like '90%'") from None
    return value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _rate_limit(value: str) -> str:
    if value.strip():
        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                f"rate limit {value!r} is not like '100/second' or '10 per minute'"
            ) from None
    return value.strip()


def _proxies(value: tuple[str, ...]) -> tuple[str, ...]:
    for proxy in value:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ValueError(f"{proxy!r} is not an address or a network") from None
    return value


def _origins(value: tuple[str, ...]) -> tuple[str, ...]:
    for origin in value:
        scheme, _, rest = origin.partition("://")
        if scheme not in ("http", "https") or not rest or "/" in rest:
            raise ValueError(f"{origin!r} is not an origin such as https://game.example")
    return value


def _endpoint(value: object) -> object:
    if isinstance(value, str):
        value = value.strip()
        scheme, _, rest = value.partition("://")
        if value and (scheme not in ("http", "https") or not rest):
            # Not the value in the message: a URL may hold a password.
            raise ValueError("not an http(s) URL such as http://collector:4318")
        return value or None
    return value


def _redis_url(value: str) -> str:
    parse_redis_url(value)  # raises ValueError naming what is wrong, never the password
    return value


#: A comma-separated list in the environment (``NoDecode``: not read as JSON).
Listed = BeforeValidator(split_list)
#: A share, given as ``0.9`` or ``90%``.
Percent = Annotated[float, BeforeValidator(_percent)]
#: A word compared in lower case (``INFO`` is ``info``).
Lowered = BeforeValidator(_lower)
#: Empty (no limit) or rate limits in the ``limits`` notation: ``100/second;1000/hour``.
RateLimit = Annotated[str, AfterValidator(_rate_limit)]
#: Addresses or networks of trusted proxies.
Proxies = Annotated[tuple[str, ...], NoDecode, Listed, AfterValidator(_proxies)]
#: Browser origins (scheme and host, no path).
Origins = Annotated[tuple[str, ...], NoDecode, Listed, AfterValidator(_origins)]
#: An http(s) URL, or None when empty.
Endpoint = Annotated[str | None, BeforeValidator(_endpoint)]
#: A Redis URL: ``redis://``, ``rediss://``, ``unix://``, or a cluster's
#: ``redis+cluster://host:port[,host:port...]`` / ``rediss+cluster://``.
RedisURL = Annotated[str, AfterValidator(_redis_url)]
