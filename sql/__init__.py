"""The SQL of ranker: numbered migrations and named queries, as ``.sql`` files beside this module.

``queries.sql`` holds blocks that each open with a ``-- name: <verb_noun>`` line, followed by
comment lines that document the block, then the statement. Found the same way from a checkout
and from an installed wheel (``importlib.resources``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import LiteralString

_NAME = re.compile(r"^-- name: (?P<name>[a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True, order=True)
class Migration:
    """One numbered schema change (``migrations/0001_initial.sql``)."""

    version: int
    name: str
    text: LiteralString


def _read(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def parse_queries(text: str) -> dict[str, str]:
    """The named blocks of a queries file; ``ValueError`` on a name used twice or an empty block."""
    queries: dict[str, str] = {}
    matches = list(_NAME.finditer(text))
    for match, following in zip(matches, [*matches[1:], None], strict=True):
        end = following.start() if following else len(text)
        body = text[match.end() : end].strip()
        name = match["name"]
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        statement = "\n".join(ln for ln in body.splitlines() if not ln.startswith("--")).strip()
        if not statement:
            raise ValueError(f"query {name!r} has no statement")
        queries[name] = statement.rstrip(";")
    return queries


@cache
def queries() -> dict[str, str]:
    """Every named query of ``queries.sql``."""
    return parse_queries(_read("queries.sql"))


def query(name: str) -> LiteralString:
    """One named query; ``KeyError`` naming it when there is none."""
    try:
        # The text comes from our own file, never from input: as safe as a literal.
        return queries()[name]
    except KeyError:
        raise KeyError(f"no query named {name!r} in sql/queries.sql") from None


@cache
def migrations() -> tuple[Migration, ...]:
    """Every migration, in version order; ``ValueError`` on a version used twice."""
    found: list[Migration] = []
    for entry in resources.files(__name__).joinpath("migrations").iterdir():
        match = _MIGRATION.match(entry.name)
        if match:
            text: LiteralString = entry.read_text(encoding="utf-8")
            found.append(Migration(int(match["version"]), match["name"], text))
    found.sort()
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"migration versions are not unique: {versions}")
    return tuple(found)
