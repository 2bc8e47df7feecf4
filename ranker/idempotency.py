"""The idempotency record of a session: what ``submit.lua`` stores under its key
(``keys.seen``) and tells a retry from a reuse of the id by, and what a rebuild restores."""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass


def session_says(user_id: int, score: int, game_mode: str) -> str:
    """What a session was accepted with: a retry must say the same, or it is another session
    reusing the id."""
    return f"{user_id} {score} {game_mode}"


#: Length of an ``IdempotencyRecord``'s text: 22 characters of event id, 6 of digest.
_RECORD_CHARS = 28


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """What a session's idempotency key holds: the event id it was accepted as and what it
    said (``session_says``), or, for a key of an older version, what that one wrote.

    Written as 28 characters: the event id's 16 bytes and a 4-byte BLAKE2b digest of what the
    session said, each base64url. Redis keeps a value of up to 44 bytes inside its object (an
    embedded string), here one allocation of 48 bytes, where the text form it replaces
    (``<event id> <user> <score> <mode>``, 47 bytes and more) took two (docs/design.md, "Redis
    keys"). A reuse of the id with other data whose digest matches (odds 1 in 2^32) is answered
    as a retry: nothing is stored either way.
    """

    event_id: str
    #: The digest of what the session said; the text itself for an older key; None for a key
    #: older still, which kept the event id alone (such a key cannot tell: a retry, as it was).
    says: str | None
    legacy: bool = False

    @classmethod
    def of(cls, event_id: str, user_id: int, score: int, game_mode: str) -> IdempotencyRecord:
        """The record of an acceptance."""
        return cls(event_id, _says_digest(session_says(user_id, score, game_mode)))

    @classmethod
    def parse(cls, raw: bytes) -> IdempotencyRecord:
        """The record a key holds, of this version or an older one."""
        text = raw.decode()
        if len(text) == _RECORD_CHARS and " " not in text:
            packed = uuid.UUID(bytes=base64.urlsafe_b64decode(text[:22] + "=="))
            return cls(str(packed), text[22:])
        event_id, _, says = text.partition(" ")
        return cls(event_id, says or None, legacy=True)

    def text(self) -> str:
        """The value to store (``submit.lua``, and the rebuild's restored keys)."""
        packed = base64.urlsafe_b64encode(uuid.UUID(self.event_id).bytes).rstrip(b"=")
        return packed.decode() + (self.says or "")

    def is_retry(self, user_id: int, score: int, game_mode: str) -> bool:
        """Whether a submission repeats the session this record is of."""
        says = session_says(user_id, score, game_mode)
        if self.says is None:
            return True
        return self.says == (says if self.legacy else _says_digest(says))


def _says_digest(says: str) -> str:
    digest = hashlib.blake2b(says.encode(), digest_size=4).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
