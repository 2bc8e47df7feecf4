"""The Lua scripts, loaded from the ``.lua`` files beside this module, registered once per client.

redis-py's ``AsyncScript`` runs EVALSHA and falls back to loading the script on NOSCRIPT, so a
restarted or failed-over Redis is handled without our help.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

    from ranker.connections import Client

NAMES = (
    "submit",
    "rank",
    "top",
    "around",
    "ack",
    "rebuild_begin",
    "rebuild_extend",
    "rebuild_swap",
    "trim_acked",
    "define",
    "restore_definitions",
    "board_top",
    "board_player",
    "board_around",
    "board_lookup",
    "set_name",
    "ban",
    "unban",
    "void",
    "moderation_finish",
    "archive_store",
    "rate_limit",
    "replica_sync",
    "shard_counts",
    "shard_page",
)


#: A line ``-- include: <name>`` of a script stands for the text of ``lua/lib/<name>.lua``:
#: Client runs each script alone, so a helper several scripts share is put in each at load.
_INCLUDE = re.compile(r"^-- include: (\w+)$", re.MULTILINE)


@cache  # read once per process: every client that registers the scripts shares the text
def source(name: str) -> str:
    """The text of one script, its includes in place; ``FileNotFoundError`` when there is no
    ``<name>.lua`` (or no library file it includes)."""
    text = resources.files("ranker").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
    return _INCLUDE.sub(lambda found: library(found.group(1)).rstrip("\n"), text)


@cache
def library(name: str) -> str:
    """The text of ``lua/lib/<name>.lua``, a helper that scripts include."""
    folder = resources.files("ranker").joinpath("lua", "lib")
    return folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")


def available() -> set[str]:
    """The names of every ``.lua`` file shipped with the package."""
    folder = resources.files("ranker").joinpath("lua")
    return {entry.name[:-4] for entry in folder.iterdir() if entry.name.endswith(".lua")}


@dataclass(frozen=True)
class Scripts:
    """Every script registered on one client."""

    submit: AsyncScript
    rank: AsyncScript
    top: AsyncScript
    around: AsyncScript
    ack: AsyncScript
    rebuild_begin: AsyncScript
    rebuild_extend: AsyncScript
    rebuild_swap: AsyncScript
    trim_acked: AsyncScript
    define: AsyncScript
    restore_definitions: AsyncScript
    board_top: AsyncScript
    board_player: AsyncScript
    board_around: AsyncScript
    board_lookup: AsyncScript
    set_name: AsyncScript
    ban: AsyncScript
    unban: AsyncScript
    void: AsyncScript
    moderation_finish: AsyncScript
    archive_store: AsyncScript
    rate_limit: AsyncScript
    replica_sync: AsyncScript
    shard_counts: AsyncScript
    shard_page: AsyncScript

    @classmethod
    def register(cls, client: Client) -> Scripts:
        """Register every script on ``client`` (no round trip: loading happens on first use)."""
        return cls(**{name: client.register_script(source(name)) for name in NAMES})
