"""What one client address may cost an API process: failed authentications, public reads, all
reads together, and the log lines its refusals write.

These budgets are counted in the process's own memory, not in Redis: they guard the process
against one client, so they must cost no round trip on the hot path, and with N processes a client
gets at most N times each budget. The budgets of API keys (``RANKER_WRITE_RATE_LIMIT``,
``RANKER_READ_RATE_LIMIT``) are the shared ones (``ratelimit``).
"""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItem

from ranker.api.ratelimit import budgets, over_budget
from ranker.errors import TooManyRequests
from ranker.settings import Settings

log = logging.getLogger("ranker.api")


class Windows:
    """Fixed windows counted in this process's memory, as the ``limits`` library's fixed-window
    limiter counts them on its memory storage (a caller's window opens at its first request and
    lasts the budget's period), without that storage's expiry timer: a thread it starts every
    10 ms while it holds any count, which takes the GIL and walks every count. On the read path
    that timer and the library's key building cost more than the counting itself
    (benchmarks/NOTES.md, "The read path")."""

    #: Counts held at most; past that the ended windows are forgotten (none ended: a flood of
    #: addresses, and every window starts over).
    MAX_COUNTS = 100_000

    def __init__(self) -> None:
        # (budget's index in its list, identifiers...) -> [monotonic end of the window, count]
        self._counts: dict[tuple[object, ...], list[float]] = {}

    def hit(self, item: RateLimitItem, key: tuple[object, ...]) -> bool:
        """Count one request against ``item`` for ``key``; False (nothing counted) when the
        window's budget is spent."""
        now = time.monotonic()
        window = self._counts.get(key)
        if window is None or window[0] <= now:
            if len(self._counts) >= self.MAX_COUNTS:
                self._forget(now)
            window = self._counts[key] = [now + item.get_expiry(), 0]
        if window[1] >= item.amount:
            return False
        window[1] += 1
        return True

    def spent(self, item: RateLimitItem, key: tuple[object, ...]) -> bool:
        """Whether ``key``'s window of ``item`` has no request left."""
        window = self._counts.get(key)
        return window is not None and window[0] > time.monotonic() and window[1] >= item.amount

    def reset_time(self, key: tuple[object, ...]) -> float:
        """When ``key``'s window ends, in epoch seconds."""
        window = self._counts.get(key)
        left = 0.0 if window is None else max(0.0, window[0] - time.monotonic())
        return time.time() + left

    def _forget(self, now: float) -> None:
        ended = [key for key, (ends, _) in self._counts.items() if ends <= now]
        for key in ended or list(self._counts):
            del self._counts[key]


class AddressLimits:
    """The per-process budgets of ``RANKER_AUTH_FAILURE_LIMIT``, ``RANKER_ADDRESS_READ_LIMIT``
    and ``RANKER_TOTAL_READ_LIMIT``."""

    def __init__(self, settings: Settings) -> None:
        self._windows = Windows()
        self._auth_failures = list(enumerate(budgets(settings.auth_failure_limit)))
        self._address_reads = list(enumerate(budgets(settings.address_read_limit)))
        self._total_reads = list(enumerate(budgets(settings.total_read_limit)))

    def check_guessing(self, client: str) -> None:
        """429 for a client whose failed authentications spent their budget: while it lasts,
        no key it sends is even looked at (a right guess must not tell itself apart)."""
        for n, item in self._auth_failures:
            key = ("auth", n, client)
            if self._windows.spent(item, key):
                raise self._refusal(item, key, True, "failed authentications")

    def failed_authentication(self, client: str) -> None:
        for n, item in self._auth_failures:
            self._windows.hit(item, ("auth", n, client))

    def spend_read(self, client: str | None) -> None:
        """Count one read: (``client``: a read without an API key) against that address's
        budget, then against every read's. 429 when one is spent; a read an address's budget
        refuses takes nothing from the others'."""
        if client is not None:
            for n, item in self._address_reads:
                key: tuple[object, ...] = ("address", n, client)
                if not self._windows.hit(item, key):
                    raise self._refusal(item, key, True, "public reads")
        for n, item in self._total_reads:
            key = ("reads", n)
            if not self._windows.hit(item, key):
                raise self._refusal(item, key, False, "all reads of this server")

    def _refusal(
        self, item: RateLimitItem, key: tuple[object, ...], of_address: bool, what: str
    ) -> TooManyRequests:
        limit = "the limit of this address of" if of_address else "the limit of"
        return over_budget(item, self._windows.reset_time(key), limit, f" {what}", "client")


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
