"""Each API process's copies of the top pages it answered, encoded, kept while Redis says
they are current.

A top read sends the version of its copy ("" for none) with its one Lua call; the script answers
"unchanged" when that is still the namespace's pages version (``keys.pages_version``, bumped in
the same call by every write a page can show) and the board's key still exists (a period gone
by its TTL bumped nothing), else the page and the version it is of. Every read still costs its
round trip: what a hit saves is the page's reply and its decoding, the entries' models and
their encoding; the bytes sent are the copy's, byte for byte. Since Redis decides on every
read, no copy is ever served after a write that changed its page was answered, whatever this
process missed meanwhile.

The version is the namespace's, not a board's: every accepted session changes the global board
(and a name changes every page showing its player), so a board's own counter would save few
misses and cost every writer a counter per board.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

from ranker import metrics

#: Copies kept per cache (one cache per top route and process): the pages asked for often.
#: A copy is a page's JSON, a few KB at most (``top_limit_max`` entries).
CAPACITY = 256

Page = TypeVar("Page")
#: A read of a page at the version of a copy (``b""``: none): the current version, and the
#: page, or ``None`` when the version is the copy's (the copy is current).
Read = Callable[[bytes], Awaitable[tuple[bytes, Page | None]]]

_HIT = metrics.top_cache.labels("hit")
_MISS = metrics.top_cache.labels("miss")


class PageCache:
    """Up to ``capacity`` pages, each its version and its body, the least recently used
    dropped first; ``enabled`` False (``RANKER_TOP_CACHE=false``): none is kept and every read
    is a whole one (counted nowhere)."""

    def __init__(self, enabled: bool = True, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"a page cache holds at least 1 page, not {capacity}")
        self.enabled = enabled
        self.capacity = capacity
        self._pages: OrderedDict[Hashable, tuple[bytes, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pages)

    def get(self, key: Hashable) -> tuple[bytes, bytes] | None:
        """The version and body kept for ``key``, which becomes the most recently used;
        ``None`` when none is kept."""
        found = self._pages.get(key)
        if found is not None:
            self._pages.move_to_end(key)
        return found

    def put(self, key: Hashable, version: bytes, body: bytes) -> None:
        """Keep ``body`` at ``version`` for ``key`` (over any older copy), dropping the least
        recently used page when the cache is full."""
        self._pages[key] = (version, body)
        self._pages.move_to_end(key)
        if len(self._pages) > self.capacity:
            self._pages.popitem(last=False)

    async def body(self, key: Hashable, read: Read[Page], encode: Callable[[Page], bytes]) -> bytes:
        """The body of the page ``key`` names: the copy when ``read`` says it is current,
        else the page ``read`` returns, as ``encode`` writes it, kept for the next read.
        ``read``'s errors are raised as they are (a namespace not loaded, Redis away), and
        keep nothing."""
        # The copy is held here, across the read: evicted meanwhile, it is still the page.
        kept = self.get(key) if self.enabled else None
        version, page = await read(kept[0] if kept else b"")
        if page is not None:
            body = encode(page)
            if self.enabled:
                _MISS.inc()
                # Replies of two reads may arrive in either order: an older copy put last is
                # only a miss for the next read (Redis compares), never a stale answer.
                self.put(key, version, body)
            return body
        if kept is None:  # no version is "": the scripts answer a page to a read of no copy
            raise RuntimeError("a read of no copy was answered 'unchanged'")
        _HIT.inc()
        return kept[1]
