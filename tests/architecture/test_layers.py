"""The import direction is one way: domain <- application <- persistence/adapters <- entrypoints."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

ENTRYPOINTS = {"penpay", "penpay_api", "deriv_gateway", "mpesa_adapter", "workers"}
IO_LIBRARIES = {"sqlalchemy", "grpc", "aiohttp", "redis", "websockets", "alembic"}

FORBIDDEN = {
    # the domain is pure Python
    "domain": IO_LIBRARIES | ENTRYPOINTS | {"asyncio", "pydantic", "application", "persistence"},
    # use cases depend on ports, not on adapters or entrypoints
    "application": IO_LIBRARIES | ENTRYPOINTS | {"persistence"},
    # adapters never reach up into entrypoints
    "persistence": ENTRYPOINTS,
}


def imported_top_level_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_it_must_not(layer: str) -> None:
    offences = {
        str(path.relative_to(ROOT)): sorted(imported_top_level_packages(path) & FORBIDDEN[layer])
        for path in sorted((ROOT / layer).rglob("*.py"))
    }
    assert {file: names for file, names in offences.items() if names} == {}


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "leaky.py"
    module.write_text("import sqlalchemy\nfrom redis.asyncio import Redis\nfrom . import sibling\n")
    assert imported_top_level_packages(module) == {"sqlalchemy", "redis"}
