"""Per-caller request budgets (``RANKER_WRITE_RATE_LIMIT``, ``RANKER_READ_RATE_LIMIT``).

Each budget is a sliding-window counter kept in the namespace's Redis (one small hash per kind,
caller and budget, ``Keys.rate_limit``), so that every API process of a deployment draws on the
same budget; the counting is ``lua/lib/budget.lua``, written once. A submission is charged
inside ``submit.lua`` (``Ranking.submit``): its check costs no round trip of its own. Every
other request with a budget is charged by ``rate_limit.lua``, which includes the same counter.
A caller is its API key's id, or its client address for a public read. The budgets' format is
the ``limits`` library's (``100/second; 1000/hour``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many

from ranker.connections import Client, translate_redis_errors
from ranker.errors import TooManyRequests
from ranker.scripts import Scripts
from ranker.settings import Settings
from ranker.shards import home

#: The prefix of a caller counted by its address (a public read without a key).
ADDRESS = "address:"


@dataclass(frozen=True, slots=True)
class Charge:
    """One request of ``caller`` to charge to its budgets of ``kind``: the keys and the spec
    that ``lua/lib/budget.lua`` reads, and the 429 of a refusal (``ranking.Charge``)."""

    kind: str
    caller: str
    items: tuple[RateLimitItem, ...]
    keys: tuple[str, ...]
    #: ``<amount> <window ms>`` per budget, in the order of ``keys``.
    spec: str

    def refused(self, budget: int, retry_after_s: int) -> TooManyRequests:
        """The 429 of a refusal by the ``budget``-th (1-based), whose window ends in
        ``retry_after_s``, naming the caller's key or (a public read) its address."""
        field = "client" if self.caller.startswith(ADDRESS) else "authorization"
        item = self.items[budget - 1]
        return refusal(item, retry_after_s, f"the {self.kind} rate limit of", "", field)


class RateLimits:
    """The write and read budgets of one namespace."""

    def __init__(self, redis: Client, settings: Settings) -> None:
        self._keys = home(settings.namespace, settings.board_shards)
        # Registering makes no round trip; the script is loaded on its first use.
        self._script = Scripts.register(redis).rate_limit
        self._budgets: dict[str, tuple[RateLimitItem, ...]] = {
            "write": tuple(budgets(settings.write_rate_limit)),
            "read": tuple(budgets(settings.read_rate_limit)),
        }
        # What the scripts read of each kind's budgets: the same for every request.
        self._specs = {
            kind: " ".join(f"{item.amount} {item.get_expiry() * 1000}" for item in items)
            for kind, items in self._budgets.items()
        }

    def limits(self, kind: str) -> bool:
        """Whether requests of ``kind`` ("read" or "write") have a budget at all."""
        return bool(self._budgets[kind])

    def charge(self, kind: str, caller: str) -> Charge | None:
        """The charge of one request of ``kind`` by ``caller`` (an API key's id, or
        ``address:<ip>``) to its budgets, for a script to make; ``None`` without budgets."""
        items = self._budgets[kind]
        if not items:
            return None
        keys = tuple(
            self._keys.rate_limit(kind, caller, item.amount, item.get_expiry()) for item in items
        )
        return Charge(kind, caller, items, keys, self._specs[kind])

    async def spend(self, kind: str, caller: str) -> None:
        """Count one request of ``kind`` by ``caller`` in a round trip of its own:
        ``TooManyRequests`` (429) when one of its budgets is spent (then none counts it);
        ``RedisUnavailable`` (503) when Redis does not answer."""
        charge = self.charge(kind, caller)
        if charge is None:
            return
        with translate_redis_errors():
            refused = await self._script(list(charge.keys), [charge.spec])
        if refused:
            raise charge.refused(int(refused[0]), int(refused[1]))


def budgets(text: str) -> list[RateLimitItem]:
    """The budgets of a limit setting (``100/second; 1000/hour``); empty: none."""
    return parse_many(text) if text else []


def over_budget(
    item: RateLimitItem, reset_time: float, limit: str, what: str, field: str
) -> TooManyRequests:
    """The 429 of a spent budget whose window ends at ``reset_time`` (epoch seconds, this
    process's clock): ``refusal``."""
    return refusal(item, max(1, math.ceil(reset_time - time.time())), limit, what, field)


def refusal(
    item: RateLimitItem, retry_after_s: int, limit: str, what: str, field: str
) -> TooManyRequests:
    """The 429 of a spent budget: "over <limit> <amount> <what> per <window>; retry after ..."
    naming ``field``."""
    return TooManyRequests(
        f"over {limit} {item.amount}{what} per {item.multiples} {item.GRANULARITY.name}(s); "
        f"retry after {retry_after_s} s",
        retry_after_s,
        item.amount,
        field,
    )
