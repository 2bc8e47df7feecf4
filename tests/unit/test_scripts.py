from __future__ import annotations

import re

import pytest

from ranker import scripts


def test_every_lua_file_is_registered_and_every_name_has_a_file() -> None:
    assert scripts.available() == set(scripts.NAMES)


@pytest.mark.parametrize("name", scripts.NAMES)
def test_each_script_documents_keys_argv_and_returns(name: str) -> None:
    header = scripts.source(name).split("\n\n")[0]

    assert header.startswith(f"-- {name}:")
    for word in ("KEYS[1]", "ARGV", "Returns"):
        assert word in header or word in scripts.source(name)[:1500], (name, word)


@pytest.mark.parametrize("name", scripts.NAMES)
def test_no_script_builds_a_key_name(name: str) -> None:
    # Keys come only through KEYS (cluster-safe): no "ranker:" literal inside a script.
    assert not re.search(r"['\"]ranker:", scripts.source(name))
