"""The binding of a namespace to a database (persistence/binding.py) on fakeredis: who claims
an unbound namespace, what refuses a bound one, and what each message shows."""

from __future__ import annotations

import fakeredis
import pytest

from persistence.binding import BoundElsewhere, DatabaseIdentity, bound_to, claim
from ranker.keys import Keys

OURS = DatabaseIdentity("0b5e0f3c-0000-4000-8000-000000000001", "ranker_a on db-a:5432")
THEIRS = DatabaseIdentity("0b5e0f3c-0000-4000-8000-000000000002", "ranker_b on db-b:5432")


def test_an_identity_round_trips_through_the_key_value() -> None:
    assert DatabaseIdentity.parse(OURS.value.encode()) == OURS
    assert DatabaseIdentity.parse("only-an-id") == DatabaseIdentity("only-an-id", "no label")


async def test_the_first_claim_binds_and_the_same_database_claims_again_freely() -> None:
    redis = fakeredis.FakeAsyncRedis()
    keys = Keys("eu")

    await claim(redis, "eu", OURS)
    await claim(redis, "eu", OURS)

    assert await bound_to(redis, keys) == OURS


async def test_a_claim_on_a_namespace_bound_to_another_database_is_refused_naming_both() -> None:
    redis = fakeredis.FakeAsyncRedis()
    await claim(redis, "eu", THEIRS)

    with pytest.raises(BoundElsewhere) as refused:
        await claim(redis, "eu", OURS)

    assert await bound_to(redis, Keys("eu")) == THEIRS  # the refused claim changed nothing
    full, public = str(refused.value), refused.value.detail
    assert f"namespace eu is bound to database {THEIRS}, not to this one, {OURS}" in full
    assert "ranker rebuild" in full
    assert public == f"namespace eu is bound to database {THEIRS.id}, not to this one ({OURS.id})"
    assert "db-a" not in public and "db-b" not in public  # /readyz shows it to anyone


async def test_an_unbound_namespace_is_bound_to_none() -> None:
    assert await bound_to(fakeredis.FakeAsyncRedis(), Keys("eu")) is None
