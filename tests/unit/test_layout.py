"""The house (docs/design.md, "Architecture"): the import contracts of pyproject.toml name every
module they must, imports inside functions say why, and modules stay small."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ranker", "persistence", "sql", "loadgen")
#: Modules a person can read in one sitting (STYLE.md: under about 400 lines).
MODULE_LINES_MAX = 400


def contract(contract_id: str) -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    found: dict[str, Any] = next(c for c in contracts if c["id"] == contract_id)
    return found


def modules_of(folder: Path, package: str) -> set[str]:
    """The dotted names of the ``.py`` modules directly in ``folder`` (not ``__init__``)."""
    return {f"{package}.{path.stem}" for path in folder.glob("*.py") if path.stem != "__init__"}


def core_modules() -> set[str]:
    return modules_of(ROOT / "ranker", "ranker") - {"ranker.__main__"}


def test_the_core_contract_names_every_module_at_the_root_of_ranker() -> None:
    assert set(contract("core")["source_modules"]) == core_modules()


def test_the_dev_servers_may_import_no_module_of_the_core() -> None:
    assert core_modules() <= set(contract("dev")["forbidden_modules"])


def test_the_load_driver_contract_names_every_module_outside_bench() -> None:
    driver = set(contract("driver")["source_modules"])
    forbidden = set(contract("driver")["forbidden_modules"])

    assert driver == modules_of(ROOT / "loadgen", "loadgen")
    assert core_modules() - forbidden == {"ranker.models"}  # the only module it may use


def test_the_acyclic_contract_covers_every_package() -> None:
    assert set(contract("acyclic")["ancestors"]) == set(PACKAGES)


def sources() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def imports_inside_functions(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found += [n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom)]
    return found


def test_an_import_inside_a_function_says_why_on_its_line_or_just_above() -> None:
    """Lazy imports (a comment within five lines above says why) are for optional dependencies
    and start-up cost, never to hide an arrow between our own modules (import-linter would not
    see it)."""
    unexplained, ours = [], []
    for path in sources():
        lines = path.read_text().splitlines()
        for node in imports_inside_functions(ast.parse("\n".join(lines))):
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
            if (module or "").split(".")[0] in PACKAGES:
                ours.append(where)
            nearby = lines[max(0, node.lineno - 6) : node.end_lineno]
            if not any("#" in line for line in nearby):
                unexplained.append(where)

    assert ours == []
    assert unexplained == []


def test_every_module_is_under_the_size_limit() -> None:
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in sources()}

    assert {path: n for path, n in sizes.items() if n > MODULE_LINES_MAX} == {}
