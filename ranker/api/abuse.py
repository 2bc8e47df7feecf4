"""What one client address may cost an API process: failed authentications, public reads, all
reads together, and the log lines its refusals write.

These budgets are counted in the process's own memory (the ``limits`` library's fixed window),
not in Redis: they guard the process against one client, so they must cost no round trip on the
hot path, and with N processes a client gets at most N times each budget. The budgets of API keys
(``RANKER_WRITE_RATE_LIMIT``, ``RANKER_READ_RATE_LIMIT``) are the shared ones (``ratelimit``).
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem
from limits.storage import MemoryStorage
from limits.strategies import FixedWindowRateLimiter

from ranker.api.ratelimit import budgets, over_budget
from ranker.errors import TooManyRequests
from ranker.settings import Settings

log = logging.getLogger("ranker.api")


class AddressLimits:
    """The per-process budgets of ``RANKER_AUTH_FAILURE_LIMIT``, ``RANKER_ADDRESS_READ_LIMIT``
    and ``RANKER_TOTAL_READ_LIMIT``."""

    def __init__(self, settings: Settings) -> None:
        self._limiter = FixedWindowRateLimiter(MemoryStorage())
        self._auth_failures = budgets(settings.auth_failure_limit)
        self._address_reads = budgets(settings.address_read_limit)
        self._total_reads = budgets(settings.total_read_limit)

    def check_guessing(self, client: str) -> None:
        """429 for a client whose failed authentications spent their budget: while it lasts,
        no key it sends is even looked at (a right guess must not tell itself apart)."""
        for item in self._auth_failures:
            if not self._limiter.test(item, "auth", client):
                raise self._refusal(item, "auth", client, "failed authentications", "client")

    def failed_authentication(self, client: str) -> None:
        for item in self._auth_failures:
            self._limiter.hit(item, "auth", client)

    def spend_read(self, client: str | None) -> None:
        """Count one read: (``client``: a read without an API key) against that address's
        budget, then against every read's. 429 when one is spent; a read an address's budget
        refuses takes nothing from the others'."""
        if client is not None:
            for item in self._address_reads:
                if not self._limiter.hit(item, "address", client):
                    raise self._refusal(item, "address", client, "public reads", "client")
        for item in self._total_reads:
            if not self._limiter.hit(item, "reads"):
                raise self._refusal(item, "reads", None, "all reads of this server", "client")

    def _refusal(
        self, item: RateLimitItem, kind: str, client: str | None, what: str, field: str
    ) -> TooManyRequests:
        identifiers = (kind, client) if client is not None else (kind,)
        stats = self._limiter.get_window_stats(item, *identifiers)
        limit = "the limit of this address of" if client is not None else "the limit of"
        return over_budget(item, stats.reset_time, limit, f" {what}", field)


class SampledLog:
    """Refusal log lines, one per client address per interval: the first refusal is logged at
    once, the rest of the interval's are counted and logged with the next one after it. A client
    refused 10,000 times a second writes one line a minute, not 10,000 a second."""

    #: Addresses remembered at most; past that, those quiet for an interval are forgotten.
    MAX_ADDRESSES = 10_000

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._since: dict[str, tuple[float, int]] = {}  # address -> (last line, refusals since)

    def refused(self, client: str, line: str) -> None:
        now = time.monotonic()
        last, suppressed = self._since.get(client, (-math.inf, 0))
        if now - last < self.interval_s:
            self._since[client] = (last, suppressed + 1)
            return
        more = f" (and {suppressed} more refusals in the last {self.interval_s:g} s)"
        log.info("%s%s", line, more if suppressed else "")
        if len(self._since) >= self.MAX_ADDRESSES:
            self._forget(now)
        self._since[client] = (now, 0)

    def _forget(self, now: float) -> None:
        quiet = [key for key, (last, _) in self._since.items() if now - last >= self.interval_s]
        for key in quiet or list(self._since):  # none quiet: a flood of addresses; start over
            del self._since[key]
