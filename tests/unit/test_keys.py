from __future__ import annotations

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
    ]

    assert all(name.startswith("ranker:{eu-1}:") for name in names)
    assert len(set(names)) == len(names)


def test_namespaces_do_not_share_keys() -> None:
    assert Keys("a").board("global") != Keys("b").board("global")
