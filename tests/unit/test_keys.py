from __future__ import annotations

import pytest

from ranker.keys import Keys


def test_every_key_of_a_namespace_shares_one_hash_tag() -> None:
    keys = Keys("eu-1")
    names = [
        keys.board("global"),
        keys.temp("mode:solo"),
        keys.delta("global"),
        keys.seen("abc"),
        keys.seen_legacy("abc"),
        keys.events,
        keys.marker,
        keys.rebuild_flag,
        keys.bound_database,
        keys.pages_version,
        keys.rate_limit("write", "0123456789ab", 5, 60),
        keys.rate_limit("read", "address:2001:db8::1", 5, 60),
    ]

    assert all(name.startswith("ranker:{eu-1}:") for name in names)
    assert len(set(names)) == len(names)


def test_namespaces_do_not_share_keys() -> None:
    assert Keys("a").board("global") != Keys("b").board("global")


def test_a_budget_key_names_its_kind_budget_and_caller() -> None:
    assert Keys("eu").rate_limit("write", "0123456789ab", 100, 3600) == (
        "ranker:{eu}:limits:write:100/3600s:0123456789ab"
    )


@pytest.mark.parametrize(
    ("kind", "caller"),
    [
        ("write", "0123456789abc"),  # not a key id
        ("write", "0123456789a{"),
        ("write", ""),
        ("admin", "0123456789ab"),
    ],
)
def test_a_budget_key_is_never_built_from_another_caller(kind: str, caller: str) -> None:
    with pytest.raises(ValueError, match="not a rate-limited"):
        Keys("eu").rate_limit(kind, caller, 1, 1)


def test_an_address_of_any_other_text_is_named_by_its_digest_and_keeps_its_own_budget() -> None:
    # A forwarded IPv6 address with a scope id: ipaddress accepts any text after the %.
    odd = ["address:fe80::1%{other}", "address:fe80::1%" + "x" * 100, "address:1.2.3.4\n"]
    names = [Keys("eu").rate_limit("read", caller, 1, 1) for caller in odd]

    assert len(set(names)) == len(odd)
    for name in names:
        assert name.startswith("ranker:{eu}:limits:read:1/1s:address#")
        assert name.count("{") == 1 and len(name) < 70
