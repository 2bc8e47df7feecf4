"""Every Redis key name of ranker, built in this one module.

All keys of one namespace share the hash tag ``{<ns>}``, so a Lua script may touch any of them and
Redis Cluster keeps them on one node. Lua scripts receive every key in KEYS and never build one.
Only validated names reach these functions: namespaces and game modes match
``boards.NAME_PATTERN``, session ids match ``models.SESSION_ID_PATTERN``. The layout is in
docs/design.md, "Redis keys".
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from ranker import boards
from ranker.models import SESSION_ID_PATTERN

PREFIX = "ranker"
# Checked again here, where input becomes a key name: a name that slipped past validation
# (a bug) raises instead of reaching Redis as a key of someone else's or with a hash tag.
_SESSION_ID = re.compile(SESSION_ID_PATTERN)
#: A board slot other than the built-in ones: ``<board id>/<period id>``.
_SLOT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}/(all|\d{4}-\d{2}-\d{2}|\d{4}-W\d{2}|\d{4}-\d{2})$")
_TOKEN = re.compile(r"^[0-9a-f]{32}$")
#: Who a rate limit counts by name: an API key's id (a digest prefix), or a plain client
#: address (``testclient`` in process). Any other address is named by its digest.
_CALLER = re.compile(r"[0-9a-f]{12}|address:[0-9A-Za-z.:%_-]{1,64}")
#: The consumer group of the write-behind worker on the events stream.
WORKER_GROUP = "persist"


def _checked(session_id: str) -> str:
    if not _SESSION_ID.match(session_id):
        raise ValueError(f"not a session id: {session_id!r}")
    return session_id


def session_digest(session_id: str) -> str:
    """BLAKE2b-128 of a session id, base64url without padding: 22 characters of
    ``[A-Za-z0-9_-]``, never a brace. At 128 bits, even a billion ids inside one window share a
    digest with odds below 1 in 10^20."""
    digest = hashlib.blake2b(session_id.encode(), digest_size=16).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class Keys:
    """The key names of one namespace, or (``tag``) of one shard of its boards
    (``ranker.shards``): the same names under the shard's hash tag."""

    namespace: str
    #: The hash tag of a board shard (``shards.shard_tag``); "": the namespace's own.
    tag: str = ""

    @property
    def _base(self) -> str:
        return f"{PREFIX}:{{{self.tag or self.namespace}}}"

    def board(self, slot: str) -> str:
        """The live sorted set of one period of a board (member: user id, score: the
        player's score), named by its slot (``placements.slot_of``): ``global`` and
        ``mode:<game mode>`` for the built-in boards, ``<board id>/<period id>`` for the
        others. ``ValueError`` for anything else."""
        if not (boards.is_board(slot) or _SLOT.match(slot)):
            raise ValueError(f"not a board slot: {slot!r}")
        return f"{self._base}:board:{slot}"

    def temp(self, slot: str) -> str:
        """The shadow sorted set a rebuild loads before it is renamed over the live one."""
        self.board(slot)  # validates
        return f"{self._base}:temp:{slot}"

    def delta(self, slot: str) -> str:
        """Scores submitted while a rebuild runs, added to the shadow at the swap."""
        self.board(slot)
        return f"{self._base}:delta:{slot}"

    def archive(self, slot: str) -> str:
        """A past period reloaded from PostgreSQL for a while (it left Redis with its
        retention): apart from the live key, which a late write could recreate."""
        self.board(slot)
        return f"{self._base}:archive:{slot}"

    def loading(self, slot: str, token: str) -> str:
        """Where one reload of an archived period is filled before it is renamed over
        ``archive`` (a token of its own: two processes loading the same period at once never
        mix their halves)."""
        self.board(slot)
        if not _TOKEN.match(token):
            raise ValueError(f"not a loading token: {token!r}")
        return f"{self._base}:loading:{slot}:{token}"

    @property
    def definitions(self) -> str:
        """The board definitions of the namespace (hash: board id -> ``catalog`` record)."""
        return f"{self._base}:definitions"

    @property
    def definitions_version(self) -> str:
        """A token changed by every change of ``definitions``: submit refuses a caller
        whose copy is older, and API processes re-read the hash when it moves."""
        return f"{self._base}:definitions:version"

    def seen(self, session_id: str) -> str:
        """The idempotency key of one session (value: ``idempotency.IdempotencyRecord``),
        named by a digest of the id: ``idem:`` and 22 characters whatever the id's length (up
        to 128), which keeps the name in a smaller allocation than a UUID did (docs/design.md,
        "Redis keys"). ``ValueError`` for an id that does not match ``SESSION_ID_PATTERN``."""
        return f"{self._base}:idem:{session_digest(_checked(session_id))}"

    def seen_legacy(self, session_id: str) -> str:
        """The idempotency key of a session as ranker named it before the digest (``seen:`` and
        the raw id). ``submit.lua`` still reads it, so that a retry of a session accepted by the
        previous version is recognised during an upgrade; nothing writes it any more. (Its
        ``seen:`` segment keeps it apart from every digest name, which an id could spell.)"""
        return f"{self._base}:seen:{_checked(session_id)}"

    @property
    def events(self) -> str:
        """The stream of accepted submissions that the worker persists."""
        return f"{self._base}:events"

    @property
    def marker(self) -> str:
        """Present while the namespace's boards are loaded; missing means Redis was wiped."""
        return f"{self._base}:marker"

    @property
    def rebuild_flag(self) -> str:
        """Set (value: generation id, with a TTL) while a rebuild runs."""
        return f"{self._base}:rebuild"

    @property
    def bound_database(self) -> str:
        """The database the namespace is bound to (value: ``<database id> <label>``): only a
        worker of that database persists the namespace's events."""
        return f"{self._base}:database"

    @property
    def pages_version(self) -> str:
        """A version set by every write that can change what a top page shows, in the same
        call (``lua/lib/bump_pages.lua``: from Redis's clock, never back to an earlier one):
        the processes' copies of pages (``ranker.page_cache``) are current while it stands
        still. A page reads the marker, its board's key and ``names``, so the writers of
        those bump it: submit (accepted only), set_name, ban, moderation_finish, define,
        restore_definitions, rebuild_swap (shadows and names renamed in), archive_store (a
        reloaded copy). The other writers touch no key a page reads: unban and void (state and
        stream; the scores move at moderation_finish), rebuild_begin/extend, the rebuild's and
        the archive's loads (shadow and loading keys, shown once renamed by a bumping script),
        restore_bans, ack, trim_acked, rate_limit, replica_sync, the binding, an archive's
        EXPIRE (its TTL). A key gone by its TTL bumps nothing: the scripts check it still
        exists."""
        return f"{self._base}:pages:version"

    @property
    def replica_sync(self) -> str:
        """A counter the worker bumps before it persists a batch and then waits for replicas to
        have (``lua/replica_sync.lua``; with ``RANKER_REDIS_MIN_REPLICAS_ACK`` only)."""
        return f"{self._base}:sync"

    @property
    def names(self) -> str:
        """Players' display names (hash: user id -> name), read with every page."""
        return f"{self._base}:names"

    @property
    def names_temp(self) -> str:
        """The names a rebuild loads before renaming them over ``names``."""
        return f"{self._base}:temp:names"

    @property
    def names_delta(self) -> str:
        """Names set while a rebuild runs, written over its loaded ones at the swap."""
        return f"{self._base}:delta:names"

    @property
    def moderation(self) -> str:
        """Players under moderation (hash: user id -> state): ``b`` banned; ``u <token>
        <entry id>`` an unban, ``v <token> <entry id>`` a void, whose boards are being
        recomputed (submissions for the player wait). Absent: neither (docs/design.md,
        "Players and moderation")."""
        return f"{self._base}:moderation"

    @property
    def moderation_version(self) -> str:
        """A counter every moderation change bumps: an archived copy loaded before it is
        stale and is not kept."""
        return f"{self._base}:moderation:version"

    @property
    def archives(self) -> str:
        """The archive keys loaded (set): moderation drops them all when a player changes."""
        return f"{self._base}:archives"

    @property
    def rate_limits(self) -> str:
        """The prefix of the rate limits' counters (``rate_limit``)."""
        return f"{self._base}:limits"

    def rate_limit(self, kind: str, caller: str, amount: int, window_s: int) -> str:
        """The counter of one budget of a caller (hash: ``w`` the window it last counted in,
        ``c`` that window's count, ``p`` the previous one's; ``lua/lib/budget.lua``):
        ``limits:<kind>:<amount>/<window>s:<caller>``, the caller an API key's id,
        ``address:<client address>`` or, for an address of other characters or over 64,
        ``address#<digest>``. ``ValueError`` for another kind or caller."""
        if kind not in ("read", "write"):
            raise ValueError(f"not a rate-limited kind: {kind!r}")
        if caller.startswith("address:") and not _CALLER.fullmatch(caller):
            # A forwarded IPv6 address may carry a scope id of any text (fe80::1%<anything>):
            # named by its digest, bounded and brace-free, it still has a budget of its own.
            caller = f"address#{session_digest(caller)}"
        elif not _CALLER.fullmatch(caller):
            raise ValueError(f"not a rate-limited caller: {caller!r}")
        return f"{self.rate_limits}:{kind}:{int(amount)}/{int(window_s)}s:{caller}"
