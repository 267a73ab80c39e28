"""The import direction is one way, floor by floor:

    domain  <-  application  <-  adapters  <-  composition root (penpay)  <-  proving tools  <-  CLI

Adapters are every package that implements a port or drives the use cases: persistence, security,
the provider adapters, the workers and the public API's servicers. The proving tools (`proving`:
demo, cluster, chaos soak, the simulators' books) start PenPay through its composition root; nothing
shipped imports them but the `penpay` command's modules (penpay/commands), which start them: those
files count as a floor of their own (CLI) as importers, and as the composition root when imported.
The generated contracts (`penpay/<package>/v1`, produced by the build from protos/) sit beside the
domain: anyone may import them, they import nothing of ours. Nothing imports upwards, and no two
packages of one floor import each other in a circle.

Inside the composition root, a command (penpay/commands) builds no adapter itself: it parses its
arguments, loads the settings, asks the wiring (penpay/wiring, penpay/bootstrap.py) for its daemon
and runs it, so each adapter is chosen and built in one place."""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

CONTRACTS = "contracts"
CLI = "cli"
# The command modules: the only shipped files that may import the proving tools (they start them).
CLI_FILES = "penpay/commands/"
FLOORS: dict[str, int] = {
    CONTRACTS: 0,
    "domain": 0,
    "application": 1,
    "persistence": 2,
    "security": 2,
    "mpesa_adapter": 2,
    "deriv_gateway": 2,
    "sms_adapter": 2,
    "workers": 2,
    "penpay_api": 2,
    "penpay": 3,
    "proving": 4,
    CLI: 5,
}
IO_LIBRARIES = {"sqlalchemy", "grpc", "aiohttp", "redis", "websockets", "alembic"}
# Libraries a floor must not use at all (the domain is pure; use cases speak only to ports).
FORBIDDEN_LIBRARIES = {
    "domain": IO_LIBRARIES | {"asyncio", "pydantic"},
    "application": IO_LIBRARIES,
}


def contract_packages(root: Path) -> set[str]:
    """penpay.<name> packages that are generated contracts (they hold a versioned proto package)."""
    return {p.parent.name for p in (root / "protos" / "penpay").glob("*/v1")}


def unit_of(module: str, contracts: set[str]) -> str:
    parts = module.split(".")
    if parts[0] == "penpay" and len(parts) > 1 and parts[1] in contracts:
        return CONTRACTS
    return parts[0]


def imported_modules(path: Path) -> set[str]:
    """Every absolute import of a module, wherever it is in the file (lazy imports count)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def imported_top_level_packages(path: Path) -> set[str]:
    return {module.split(".")[0] for module in imported_modules(path)}


def package_edges(root: Path, contracts: set[str]) -> dict[tuple[str, str], list[str]]:
    """(importer unit, imported unit) -> the files and modules that make the edge."""
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for package in (p for p in FLOORS if p not in (CONTRACTS, CLI)):
        for path in sorted((root / package).rglob("*.py")):
            relative = path.relative_to(root)
            source = unit_of(".".join(relative.with_suffix("").parts), contracts)
            if relative.as_posix().startswith(CLI_FILES):
                source = CLI
            for module in sorted(imported_modules(path)):
                target = unit_of(module, contracts)
                if target in FLOORS and target != source:
                    edges[(source, target)].append(f"{relative}: {module}")
    return edges


def upward(edges: Mapping[tuple[str, str], list[str]]) -> dict[str, list[str]]:
    return {
        f"{source} -> {target}": files
        for (source, target), files in edges.items()
        if FLOORS[target] > FLOORS[source]
    }


def circles(edges: Iterable[tuple[str, str]]) -> list[list[str]]:
    """Every simple cycle's smallest member first, each once (the graph has ten nodes)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for source, target in edges:
        graph[source].add(target)
    found: set[tuple[str, ...]] = set()

    def walk(start: str, node: str, path: list[str]) -> None:
        for nxt in graph[node]:
            if nxt == start:
                found.add(tuple(path))
            elif nxt not in path and nxt > start:
                walk(start, nxt, [*path, nxt])

    for start in sorted(graph):
        walk(start, start, [start])
    return [list(cycle) for cycle in sorted(found)]


ADAPTERS = {package for package, floor in FLOORS.items() if floor == FLOORS["persistence"]}
# What a command may call of the adapter packages: what runs a process or reads and reports; every
# other call (a class, `Bus.from_url`, `create_engine`, `saga_consumer`, ...) builds an adapter.
COMMANDS_MAY_CALL = {
    "workers.host.stop_on_signals",
    "workers.host.run_workers",
    "workers.alert_metrics.count_alerts",
    "persistence.audit.verify_chain",
    "persistence.migrate",
    "persistence.urls.redact",
    "penpay_api.http.parse_listen",
    "penpay_api.http.start_server",
}


# `penpay check` reads the simulators' books: a proving tool, leaving penpay/ with the others.
def adapter_calls_of_commands(root: Path) -> dict[str, list[str]]:
    """Command module -> what it calls of the adapter packages (`module.name`; `Bus.from_url(...)`
    counts as a call of `Bus`). The simulators are exempt: `penpay sim` runs them as they are."""
    found: dict[str, list[str]] = {}
    for path in sorted((root / "penpay" / "commands").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        imported: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                parts = node.module.split(".")
                if parts[0] in ADAPTERS and "simulator" not in parts:
                    imported.update({alias.asname or alias.name: node.module for alias in node.names})
        called = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                while isinstance(func, ast.Attribute):
                    func = func.value
                if isinstance(func, ast.Name) and func.id in imported:
                    module = imported[func.id]
                    called.add(module if module.endswith(f".{func.id}") else f"{module}.{func.id}")
        if called:
            found[path.name] = sorted(called)
    return found


def adapters_built_by_commands(root: Path) -> dict[str, list[str]]:
    built = {
        name: [call for call in calls if call not in COMMANDS_MAY_CALL]
        for name, calls in adapter_calls_of_commands(root).items()
    }
    return {name: calls for name, calls in built.items() if calls}


def test_commands_build_no_adapter_themselves() -> None:
    built = adapters_built_by_commands(ROOT)
    assert built == {}


def test_the_checker_sees_a_command_build_an_adapter(tmp_path: Path) -> None:
    commands = tmp_path / "penpay" / "commands"
    commands.mkdir(parents=True)
    (commands / "relay.py").write_text(
        "from workers.redis_bus import RedisStreamsBus\n"
        "from persistence.engine import create_engine\n"
        "from workers.host import stop_on_signals\n"
        "from workers.sagas import saga_consumer\n"
        "def run(url):\n"
        "    stop_on_signals(None)\n"
        "    return RedisStreamsBus.from_url(url), saga_consumer(create_engine(url))\n"
    )
    (commands / "sim.py").write_text(
        "from mpesa_adapter.simulator import DarajaSimulator\nDarajaSimulator()\n"
    )
    (commands / "wired.py").write_text(
        "from penpay.wiring.relay import build_relay\nfrom workers.relay import OutboxRelay\n"
        "def run(core) -> OutboxRelay:\n    return build_relay(core)\n"
    )
    assert adapters_built_by_commands(tmp_path) == {
        "relay.py": [
            "persistence.engine.create_engine",
            "workers.redis_bus.RedisStreamsBus",
            "workers.sagas.saga_consumer",
        ]
    }


def test_no_package_imports_a_floor_above_its_own() -> None:
    contracts = contract_packages(ROOT)
    assert contracts, "no generated contracts found: protos/penpay/*/v1"
    assert upward(package_edges(ROOT, contracts)) == {}


def test_no_two_packages_import_each_other_in_a_circle() -> None:
    assert circles(package_edges(ROOT, contract_packages(ROOT))) == []


@pytest.mark.parametrize("layer", sorted(FORBIDDEN_LIBRARIES))
def test_inner_floors_use_no_io_library(layer: str) -> None:
    offences = {
        str(path.relative_to(ROOT)): sorted(imported_top_level_packages(path) & FORBIDDEN_LIBRARIES[layer])
        for path in sorted((ROOT / layer).rglob("*.py"))
    }
    assert {file: names for file, names in offences.items() if names} == {}


def test_the_checker_sees_upward_imports_and_circles(tmp_path: Path) -> None:
    (tmp_path / "protos" / "penpay" / "ops" / "v1").mkdir(parents=True)
    files = {
        "domain/model.py": "import penpay.ops.v1.ops_pb2\n",  # a contract: allowed
        "application/use.py": "from domain import model\n",
        "persistence/store.py": "from application import use\n",
        "workers/relay.py": "def later():\n    from penpay.cli import main\n",  # lazy, still upward
        "mpesa_adapter/a.py": "import sms_adapter.b\n",
        "sms_adapter/b.py": "from mpesa_adapter import a\n",
        "proving/demo.py": "from penpay.bootstrap import core\n",  # a tool starts the root: allowed
        "penpay/commands/demo.py": "from proving import demo\n",  # the command starts the tool: allowed
        "penpay/bootstrap.py": "def later():\n    import proving.demo\n",  # the root itself may not
        "penpay_api/app.py": "from proving.demo import journey\n",  # nor any adapter
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    edges = package_edges(tmp_path, contract_packages(tmp_path))
    assert upward(edges) == {
        "workers -> penpay": ["workers/relay.py: penpay.cli"],
        "penpay -> proving": ["penpay/bootstrap.py: proving.demo"],
        "penpay_api -> proving": ["penpay_api/app.py: proving.demo"],
    }
    assert circles(edges) == [["mpesa_adapter", "sms_adapter"], ["penpay", "proving"]]
    assert ("domain", CONTRACTS) in edges
