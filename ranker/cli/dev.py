"""``ranker dev`` (what ``make run`` runs): the local stack, migrations, demo data when the boards
are empty, a development API key, and the API with its worker; Ctrl-C stops all of it."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from ranker.api.auth import KeyRing, Scope, new_key, read_key_file, write_key_file
from ranker.cli import commands
from ranker.dev.servers import ServiceUnavailable
from ranker.dev.stack import local_stack
from ranker.errors import RankerError
from ranker.settings import Settings

#: Where ``ranker dev`` keeps its servers' data, the development key and the environment file.
ROOT = Path(".ranker")


def dev(args: argparse.Namespace, settings: Settings) -> int:
    """Serve the demo on the local stack (URLs set in the environment win over local servers)."""
    try:
        return _serve_locally(args, settings)
    except ServiceUnavailable as exc:  # it lists every way that was tried: one line of its own
        raise RankerError(str(exc)) from exc


def _serve_locally(args: argparse.Namespace, settings: Settings) -> int:
    given = settings.model_fields_set
    with local_stack(
        ROOT,
        settings.redis_url if "redis_url" in given else None,
        settings.database_url if "database_url" in given else None,
    ) as stack:
        key, source, key_file = development_key(settings, ROOT)
        settings = settings.model_copy(
            update={
                "redis_url": stack.redis_url,
                "database_url": stack.database_url,
                "api_key_file": key_file,
            }
        )
        if commands.migrate(args, settings) != 0:
            raise RankerError("could not prepare the local database")
        seed = argparse.Namespace(
            players=args.players, sessions=args.players * 5, if_empty=True, json=False
        )
        commands.seed(seed, settings)
        env_file = write_env_file(settings, ROOT / "env")
        url = f"http://{args.host}:{args.port or settings.port}"
        print(
            f"\n  ranker is serving on {url}/  (Ctrl-C stops it)\n"
            f"  development API key (from {source}): {key}\n"
            f"  curl -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n"
            f'       -d \'{{"user_id": 42, "score": 1500}}\' {url}/api/leaderboard/submit\n'
            f"  other commands on this stack, from another terminal: make shell, then e.g.\n"
            f"  `ranker verify` (or: . {env_file} && .venv/bin/ranker verify)\n"
        )
        serve = argparse.Namespace(host=args.host, port=args.port, workers=1, no_worker=False)
        return commands.serve(serve, settings)


def development_key(settings: Settings, root: Path) -> tuple[str, str, Path | None]:
    """A key the service will accept for writes, where it comes from, and the key file to
    serve with: the first of ``RANKER_API_KEYS`` when set, else a key of the key file that
    may write (``RANKER_API_KEY_FILE``, by default ``<root>/api-key``, made the first time with
    a fresh admin key: on a development stack one key also tries the board definitions)."""
    if settings.api_keys:
        return settings.api_keys[0].get_secret_value(), "RANKER_API_KEYS", settings.api_key_file
    path = (settings.api_key_file or root / "api-key").resolve()
    if not path.exists():
        write_key_file(path, new_key(), Scope.ADMIN)
    entries = read_key_file(path)
    KeyRing(entries)  # a malformed key stops here, before anything starts
    for scope, key in entries:
        if scope in (Scope.WRITE, Scope.ADMIN):
            return key, str(path), path
    raise RankerError(f"{path} holds no write key")


def write_env_file(settings: Settings, path: Path) -> Path:
    """A shell file that points ``ranker`` commands at this stack (``make shell`` reads it).
    It names the key file, never a key; readable by its owner only."""
    lines = [
        f"export RANKER_REDIS_URL={shlex.quote(settings.redis_url)}",
        f"export RANKER_DATABASE_URL={shlex.quote(settings.database_url)}",
    ]
    if settings.api_key_file is not None:
        lines.append(f"export RANKER_API_KEY_FILE={shlex.quote(str(settings.api_key_file))}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(
        "# written by `ranker dev`: the environment of its stack\n" + "\n".join(lines) + "\n"
    )
    return path.resolve()
