"""The open-loop schedule: request i is due at ``start + i / rate``, whatever came before.

Times come from a fixed formula rather than from "last send + interval" so that a late wake-up
never shifts the requests after it: the sender catches up by firing, in one batch, everything
whose time has passed (``take_due``), and each request's latency is measured from its due time.
"""

from __future__ import annotations

import math

#: The resolution of event-loop timers (libuv's and epoll's): one millisecond.
TIMER_TICK_S = 0.001


class Schedule:
    """``count`` requests at ``rate`` per second from ``start`` (a ``time.perf_counter`` value)."""

    def __init__(self, rate: float, start: float, count: int) -> None:
        if rate <= 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be a finite number > 0, not {rate}")
        self.rate = rate
        self.start = start
        self.count = count
        self.next_index = 0

    @classmethod
    def for_span(cls, rate: float, start: float, span_s: float) -> Schedule:
        """The requests due in ``[start, start + span_s)``."""
        # The epsilon keeps a float product like 0.7 * 100 = 70.00000000000001 at 70 requests.
        return cls(rate, start, math.ceil(span_s * rate - 1e-9))

    def due_at(self, index: int) -> float:
        """When request ``index`` is due."""
        return self.start + index / self.rate

    @property
    def finished(self) -> bool:
        """True once every request has been taken."""
        return self.next_index >= self.count

    def take_due(self, now: float) -> range:
        """The indices of the requests due at or before ``now`` not taken yet (maybe none)."""
        # floor((now - start) * rate) is the last index due by ``now``; clamp to the schedule.
        last = min(self.count - 1, math.floor((now - self.start) * self.rate))
        due = range(self.next_index, max(self.next_index, last + 1))
        self.next_index = due.stop
        return due

    def wait_s(self, now: float) -> float:
        """Seconds from ``now`` until the next request is due (0 when it is already due)."""
        return max(0.0, self.due_at(self.next_index) - now)

    def sleep_s(self, now: float) -> float:
        """How long the sender should sleep: ``wait_s`` rounded up to whole timer ticks, and at
        least one tick.

        Event-loop timers tick in milliseconds (uvloop rounds a 0.4 ms sleep to 0 and wakes at
        once; asyncio's epoll waits whole ms). Rounding up keeps wake-ups from coming early (one
        that still does, through a stale loop clock, just sleeps another tick), so the sender
        never busy-waits: a spinning loadgen would burn a core that the service, on the same
        machine, needs. The price is that requests leave up to about one tick
        after their due time; that counts in their latency and shows as send lag.
        """
        ticks = max(1, math.ceil(self.wait_s(now) / TIMER_TICK_S - 1e-9))
        return ticks * TIMER_TICK_S
