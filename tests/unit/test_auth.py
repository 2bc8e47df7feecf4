"""API keys: who is let in, with what scope, in constant time, and never shown."""

from __future__ import annotations

import hmac
from pathlib import Path

import pytest

from ranker.api import auth
from ranker.api.auth import KeyRing, Scope, read_key_file, write_key_file
from ranker.errors import Forbidden, Unauthorized
from ranker.settings import Settings

WRITER = "w" * 20 + "-writer"
READER = "r" * 20 + "-reader"


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing([(Scope.WRITE, WRITER), (Scope.READ, READER)])


def test_a_known_key_is_identified_with_its_scope(ring: KeyRing) -> None:
    writer, reader = ring.identify(WRITER), ring.identify(READER)
    assert writer is not None and writer.scope is Scope.WRITE
    assert reader is not None and reader.scope is Scope.READ
    assert writer.key_id != reader.key_id and len(writer.key_id) == 12
    assert WRITER not in writer.key_id


@pytest.mark.parametrize("key", ["", WRITER[:-1], WRITER + "x", WRITER.upper(), " " + WRITER])
def test_anything_but_the_exact_key_is_unknown(ring: KeyRing, key: str) -> None:
    assert ring.identify(key) is None


def test_every_known_key_is_compared_whichever_matches(
    ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for key in (WRITER, READER, "no-such-key-at-all-here"):
        compared.clear()
        ring.identify(key)
        assert len(compared) == len(ring) == 2  # no early exit on a match


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic " + WRITER, WRITER, "Bearer nope-nope-nope-nope"],
)
def test_a_request_without_a_known_key_is_unauthorized(ring: KeyRing, header: str | None) -> None:
    with pytest.raises(Unauthorized) as caught:
        ring.authorize(header, Scope.READ)
    assert caught.value.status == 401
    assert caught.value.headers["WWW-Authenticate"].startswith("Bearer")
    assert [error.field for error in caught.value.errors] == ["authorization"]


def test_a_read_key_may_read_but_not_write(ring: KeyRing) -> None:
    assert ring.authorize(f"Bearer {READER}", Scope.READ).scope is Scope.READ
    with pytest.raises(Forbidden) as caught:
        ring.authorize(f"Bearer {READER}", Scope.WRITE)
    assert caught.value.status == 403
    assert READER not in caught.value.detail


def test_a_write_key_may_do_both_and_the_scheme_is_case_insensitive(ring: KeyRing) -> None:
    assert ring.authorize(f"bearer {WRITER}", Scope.WRITE).scope is Scope.WRITE
    assert ring.authorize(f"Bearer {WRITER}", Scope.READ).scope is Scope.WRITE


@pytest.mark.parametrize("key", ["short", "x" * 15, "tab\tin-the-middle-of-it", "é" * 20])
def test_weak_or_unprintable_keys_are_refused_at_start(key: str) -> None:
    with pytest.raises(ValueError, match="at least 16 printable ASCII"):
        KeyRing([(Scope.WRITE, key)])


def test_the_key_file_has_scopes_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# keys\n\nwrite {WRITER}  # the game servers\nread {READER}\n")
    assert read_key_file(path) == [(Scope.WRITE, WRITER), (Scope.READ, READER)]


def test_a_bad_scope_in_the_key_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"write {WRITER}\nroot {READER}\n")
    with pytest.raises(ValueError, match=r"keys:2: expected '<read\|write\|admin> <key>'"):
        read_key_file(path)


def test_an_admin_key_may_do_everything_and_a_write_key_may_not_administer(
    tmp_path: Path,
) -> None:
    admin = "an-admin-key-for-the-tests-0001"
    path = tmp_path / "keys"
    path.write_text(f"admin {admin}\nwrite {WRITER}\n")
    ring = KeyRing(read_key_file(path))
    for scope in Scope:
        assert ring.authorize(f"Bearer {admin}", scope).scope is Scope.ADMIN
    with pytest.raises(Forbidden) as caught:
        ring.authorize(f"Bearer {WRITER}", Scope.ADMIN)
    assert "is a write key: this request needs admin" in caught.value.detail


def test_a_written_key_file_is_private_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "api-key"
    key = auth.new_key()
    write_key_file(path, key)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_key_file(path) == [(Scope.WRITE, key)]
    assert len(key) >= 40 and key != auth.new_key()


def test_keys_come_from_the_environment_and_the_file_and_are_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "keys"
    path.write_text(f"read {READER}\n")
    monkeypatch.setenv("RANKER_API_KEYS", f"{WRITER}, {'z' * 20}")
    monkeypatch.setenv("RANKER_API_KEY_FILE", str(path))
    settings = Settings()
    ring = KeyRing.from_settings(settings)
    assert len(ring) == 3
    assert ring.identify("z" * 20) is not None
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert WRITER not in shown and "z" * 20 not in shown
