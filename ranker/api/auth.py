"""Who may call what: API keys presented as ``Authorization: Bearer <key>``.

A key has a scope: ``admin`` keys may manage the deployment (and write and read), ``write`` keys
may submit (and read), ``read`` keys may only read. Writes always need a key; reads need one only
when ``RANKER_PUBLIC_READS`` is false. Keys come from ``RANKER_ADMIN_API_KEYS`` /
``RANKER_API_KEYS`` / ``RANKER_READ_API_KEYS`` (comma-separated) and from a key file
(``RANKER_API_KEY_FILE``: one ``<scope> <key>`` per line, ``#`` comments).

Only SHA-256 digests of the keys are kept. A presented key is hashed and compared with every
known digest by ``hmac.compare_digest`` without stopping at a match, so the time taken says
nothing about which key, or how much of one, was right. Keys are never logged: a caller is
named by its key's ``key_id``, a short prefix of the digest.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ranker.errors import Forbidden, Unauthorized
from ranker.settings import Settings

#: The shortest key accepted: 128 bits as URL-safe base64 is 22 characters.
KEY_MIN_LENGTH = 16


class Scope(enum.Enum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


#: What each scope allows besides itself: every scope includes those below it.
_INCLUDES = {
    Scope.READ: {Scope.READ},
    Scope.WRITE: {Scope.READ, Scope.WRITE},
    Scope.ADMIN: set(Scope),
}


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: the id of its key (safe to log) and what the key allows."""

    key_id: str
    scope: Scope

    def may(self, scope: Scope) -> bool:
        return scope in _INCLUDES[self.scope]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class KeyRing:
    """The known keys, as digests; ``identify`` tells who presented a key."""

    def __init__(self, entries: Iterable[tuple[Scope, str]]) -> None:
        self._entries: list[tuple[bytes, Caller]] = []
        for scope, key in entries:
            if len(key) < KEY_MIN_LENGTH or not key.isascii() or not key.isprintable():
                raise ValueError(
                    f"an API key must be at least {KEY_MIN_LENGTH} printable ASCII characters"
                )
            digest = _digest(key)
            self._entries.append((digest, Caller(digest.hex()[:12], scope)))

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRing:
        entries = [(Scope.ADMIN, key.get_secret_value()) for key in settings.admin_api_keys]
        entries += [(Scope.WRITE, key.get_secret_value()) for key in settings.api_keys]
        entries += [(Scope.READ, key.get_secret_value()) for key in settings.read_api_keys]
        if settings.api_key_file is not None:
            entries += read_key_file(settings.api_key_file)
        return cls(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def identify(self, key: str) -> Caller | None:
        """The caller whose key this is, or ``None``; constant time in the key presented."""
        digest = _digest(key)
        found: Caller | None = None
        for known, caller in self._entries:
            if hmac.compare_digest(digest, known) and found is None:
                found = caller
        return found

    def authorize(self, authorization: str | None, scope: Scope) -> Caller:
        """The caller of a request with this ``Authorization`` header, allowed ``scope``:
        ``Unauthorized`` (401) without a known key, ``Forbidden`` (403) when the key's scope
        does not cover ``scope``."""
        if authorization is None:
            raise Unauthorized("this request needs an API key: Authorization: Bearer <key>")
        kind, _, key = authorization.partition(" ")
        if kind.lower() != "bearer" or not key.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <key>'")
        caller = self.identify(key.strip())
        if caller is None:
            raise Unauthorized("the API key is not valid")
        if not caller.may(scope):
            raise Forbidden(
                f"the API key {caller.key_id} is a {caller.scope.value} key: "
                f"this request needs {scope.value}"
            )
        return caller


def read_key_file(path: Path) -> list[tuple[Scope, str]]:
    """The ``<scope> <key>`` lines of a key file (``#`` starts a comment)."""
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        scope, _, key = text.partition(" ")
        try:
            entries.append((Scope(scope), key.strip()))
        except ValueError:
            raise ValueError(
                f"{path}:{number}: expected '<read|write|admin> <key>', found scope {scope!r}"
            ) from None
    return entries


def new_key() -> str:
    """A fresh random key (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def write_key_file(path: Path, key: str, scope: Scope = Scope.WRITE) -> None:
    """A key file holding one key, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(f"# ranker API keys: <read|write|admin> <key>\n{scope.value} {key}\n")
