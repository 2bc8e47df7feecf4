from __future__ import annotations

import re

import pytest

from ranker import scripts


def test_every_lua_file_is_registered_and_every_name_has_a_file() -> None:
    assert scripts.available() == set(scripts.NAMES)


@pytest.mark.parametrize("name", scripts.NAMES)
def test_includes_are_replaced_by_their_library_text(name: str) -> None:
    raw = (scripts.resources.files("ranker") / "lua" / f"{name}.lua").read_text()
    included = re.findall(r"^-- include: (\w+)$", raw, re.MULTILINE)
    text = scripts.source(name)

    assert "-- include:" not in text
    for library in included:
        assert text.count(scripts.library(library).rstrip("\n")) == 1, (name, library)


def test_the_names_helper_is_written_once_and_included_by_every_read_of_a_page() -> None:
    including = {
        name for name in scripts.NAMES if "local function names_of" in scripts.source(name)
    }

    assert including == {
        "top",
        "around",
        "board_top",
        "board_around",
        "board_lookup",
        "shard_page",
    }
    for path in (scripts.resources.files("ranker") / "lua").iterdir():
        if path.name.endswith(".lua"):
            assert "local function names_of" not in path.read_text(), path.name


def test_the_budget_counter_is_written_once_and_included_by_submit_and_the_rate_limit() -> None:
    including = {
        name for name in scripts.NAMES if "local function spend_budgets" in scripts.source(name)
    }

    assert including == {"submit", "rate_limit"}
    for path in (scripts.resources.files("ranker") / "lua").iterdir():
        if path.name.endswith(".lua"):
            assert "local function spend_budgets" not in path.read_text(), path.name


def test_an_include_of_no_library_is_an_error() -> None:
    with pytest.raises(FileNotFoundError):
        scripts.library("no_such_helper")


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
