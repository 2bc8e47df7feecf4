"""The Docker image and the compose stack, checked without a Docker engine: the build context
leaves local state out, the image holds everything its commands import, and the long-running
services have healthchecks that ``ranker`` understands."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ranker.cli.main import parser

ROOT = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"ranker", "persistence", "sql", "loadgen", "tests"}


def copied_folders() -> set[str]:
    """The folders the Dockerfile copies into the image."""
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    return {line.split()[1] for line in lines if re.match(r"COPY \w+ \w+$", line)}


def imported_packages(package: str) -> set[str]:
    """The first-party top-level packages that any module of ``package`` imports."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
    return found & FIRST_PARTY


def test_the_image_holds_every_package_its_code_imports() -> None:
    copied = copied_folders()

    assert {"ranker", "persistence", "sql"} <= copied
    for package in copied:
        assert imported_packages(package) <= copied, package


def test_the_build_context_leaves_local_state_and_the_development_key_out() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }

    assert {".git", ".venv", ".ranker", ".env"} <= ignored
    assert copied_folders().isdisjoint(ignored)


def services() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    found: dict[str, Any] = compose["services"]
    return found


@pytest.mark.parametrize("service", ["api", "worker"])
def test_each_long_running_service_has_a_healthcheck_ranker_understands(service: str) -> None:
    spec = services()[service]
    test = spec["healthcheck"]["test"]

    assert test[:3] == ["CMD", "ranker", "healthcheck"]
    args = parser().parse_args(test[2:])  # a typo in an option would exit here
    if service == "api":
        port = spec["command"][spec["command"].index("--port") + 1]
        assert args.url == f"http://127.0.0.1:{port}/healthz"
    else:
        assert args.url is None
        assert spec["environment"]["RANKER_HEARTBEAT_FILE"]  # the file the worker touches


def test_compose_bounds_redis_memory_without_eviction() -> None:
    command = services()["redis"]["command"]
    option = {name: value for name, value in zip(command[1::2], command[2::2], strict=True)}

    assert option["--maxmemory"] == "1gb"
    # Evicting would drop idempotency keys or boards; ranker refuses submit before the limit.
    assert option["--maxmemory-policy"] == "noeviction"
    assert option["--appendonly"] == "yes"
