from __future__ import annotations

import re
from pathlib import Path

import pytest

import sql
from persistence import stream

ROOT = Path(__file__).resolve().parents[2]


def test_every_query_the_code_names_exists() -> None:
    used = set()
    for path in [*ROOT.joinpath("persistence").glob("*.py"), *ROOT.glob("loadgen/bench/*.py")]:
        used |= set(re.findall(r'query\("([a-z_]+)"\)', path.read_text()))

    assert used
    assert used <= set(sql.queries())


def test_every_query_is_used_somewhere() -> None:
    sources = [*ROOT.joinpath("persistence").glob("*.py"), *ROOT.glob("loadgen/bench/*.py")]
    text = "".join(p.read_text() for p in sources)
    unused = {name for name in sql.queries() if f'"{name}"' not in text}

    assert unused == set()


def test_query_of_an_unknown_name_says_which() -> None:
    with pytest.raises(KeyError, match="no_such_query"):
        sql.query("no_such_query")


def test_parse_rejects_a_name_used_twice_and_an_empty_block() -> None:
    with pytest.raises(ValueError, match="twice"):
        sql.parse_queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n")
    with pytest.raises(ValueError, match="no statement"):
        sql.parse_queries("-- name: a\n-- only a comment\n")


def test_parse_drops_comments_and_the_final_semicolon() -> None:
    parsed = sql.parse_queries(
        "-- name: one\n-- doc line\nSELECT 1\nFROM t;\n\n-- name: two\nSELECT 2;"
    )

    assert parsed == {"one": "SELECT 1\nFROM t", "two": "SELECT 2"}


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    versions = [m.version for m in sql.migrations()]

    assert versions == list(range(1, len(versions) + 1))
    assert "CREATE TABLE IF NOT EXISTS game_sessions" in sql.migrations()[0].text


def test_an_entry_from_before_definitions_counts_where_it_did() -> None:
    columns = stream.columns_of(
        b"1700000000000-3",
        {b"e": b"x", b"s": b"s", b"u": b"1", b"p": b"2", b"m": b"team", b"t": b"0"},
    )
    assert columns[-3:] == (
        str((1700000000000 << 20) + 3).encode(),
        b"global:all:s,mode-team:all:s",
        b"\\N",  # no name: NULL in COPY's text format
    )


def test_a_name_reaches_copy_with_its_backslashes_escaped() -> None:
    fields = {b"e": b"x", b"s": b"s", b"u": b"1", b"p": b"2", b"m": b"team", b"t": b"0"}
    columns = stream.columns_of(b"1-0", {**fields, b"n": b"a\\b"})
    assert columns[-1] == b"a\\\\b"
