"""No SQL is built by string formatting and no Redis key from unchecked input.

The SQL half reads the source: every statement ranker runs comes from ``sql/queries.sql`` (through
``sql.query``) or is composed with ``psycopg.sql``, never an f-string, ``%``, ``+`` or ``.format``
of a plain string handed to ``execute``/``copy``. The Redis half checks ``ranker.keys``, where every
key name is built, refusing names that could reach another key.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from ranker.keys import Keys

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ranker", "persistence", "sql", "loadgen")
RUNS_SQL = {"execute", "executemany", "copy", "stream"}


def string_built_statements(source: str) -> list[int]:
    """Lines where a statement handed to execute/copy/stream is a formatted plain string."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in RUNS_SQL or not node.args:
            continue
        statement = node.args[0]
        formatted = (
            isinstance(statement, ast.JoinedStr)
            or _joins_plain_string(statement)
            or (
                isinstance(statement, ast.Call)
                and isinstance(statement.func, ast.Attribute)
                and statement.func.attr == "format"
                and isinstance(statement.func.value, ast.Constant)
            )
        )
        if formatted:
            found.append(node.lineno)
    return found


def _joins_plain_string(node: ast.expr) -> bool:
    """``"..." + x`` or ``"..." % x`` (at any depth); ``psycopg.sql`` objects joined with ``+``
    are composition, which quotes identifiers, and pass."""
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod)):
        return False
    sides = (node.left, node.right)
    plain = any(
        isinstance(side, ast.JoinedStr)
        or (isinstance(side, ast.Constant) and isinstance(side.value, str))
        for side in sides
    )
    return plain or any(_joins_plain_string(side) for side in sides)


@pytest.mark.parametrize(
    "line",
    [
        'await conn.execute(f"SELECT * FROM t WHERE id = {user_id}")',
        'cur.execute("SELECT * FROM t WHERE id = %s" % user_id)',
        'cur.execute("SELECT * FROM " + table)',
        'cur.execute("SELECT " + column + " FROM t")',
        'conn.execute("DELETE FROM {}".format(table))',
        'cur.copy(f"COPY {table} FROM STDIN")',
    ],
)
def test_the_check_finds_string_built_sql(line: str) -> None:
    assert string_built_statements(line) == [1]


def test_parameters_and_composed_identifiers_pass_the_check() -> None:
    safe = [
        'await conn.execute(query("select_board_totals"), {"board": board})',
        'await conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))',
        'cur.execute("SELECT 1")',
        'conn.execute(sql.SQL("ALTER TABLE {}").format(sql.Identifier(t)) + sql.SQL(d))',
    ]
    assert string_built_statements("\n".join(safe)) == []


def test_no_sql_in_the_project_is_built_by_string_formatting() -> None:
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            offenders += [f"{path}:{n}" for n in string_built_statements(path.read_text())]
    assert offenders == []


@pytest.mark.parametrize(
    "session_id", ["", "a b", "x" * 129, "s}{other", "a\nb", "ü", "a*", "{default}"]
)
def test_a_key_is_never_built_from_a_session_id_outside_the_pattern(session_id: str) -> None:
    with pytest.raises(ValueError, match="not a session id"):
        Keys("default").seen(session_id)
    with pytest.raises(ValueError, match="not a session id"):
        Keys("default").seen_legacy(session_id)


@pytest.mark.parametrize(
    "slot",
    [
        "",
        "mode:",
        "mode:{x}",
        "mode:Solo",
        "mode:a b",
        "global:x",
        "board:global",
        "weekly/",
        "weekly/2026-W4",
        "weekly/{x}",
        "Weekly/all",
        "weekly/all/x",
        "w/2026-12-01}",
    ],
)
def test_a_key_is_never_built_from_a_board_slot_outside_the_pattern(slot: str) -> None:
    for make in (Keys("default").board, Keys("default").temp, Keys("default").delta):
        with pytest.raises(ValueError, match="not a board slot"):
            make(slot)


def test_valid_names_make_keys_of_the_namespace_only() -> None:
    keys = Keys("default")
    assert re.fullmatch(r"ranker:\{default\}:idem:[A-Za-z0-9_-]{22}", keys.seen("match-9f2c:1.a_b"))
    assert keys.seen_legacy("match-9f2c:1.a_b") == "ranker:{default}:seen:match-9f2c:1.a_b"
    assert keys.board("mode:team-2") == "ranker:{default}:board:mode:team-2"
    assert keys.board("weekly-best/2026-W53") == "ranker:{default}:board:weekly-best/2026-W53"
