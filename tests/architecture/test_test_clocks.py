"""No test module reads the clock when it is imported.

A "now" taken at import is as old as the test session when a test uses it: on a slow run, tokens
issued from it expire before they are checked and windows computed from it close (it once failed
tests/identity/test_access_tokens.py on a 27-minute run). Tests take time from an injected clock
(FixedClock) or a fixed instant; a fixture may read the clock when it runs, never a module."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]

# attribute calls that read the wall clock, by the name they are called on
CLOCK_CALLS = {
    "datetime": {"now", "utcnow", "today"},
    "date": {"today"},
    "time": {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter"},
}
CLOCK_FUNCTIONS = {"utc_now"}  # domain.shared.clock.utc_now


def _reads_clock(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id in CLOCK_FUNCTIONS
    if not isinstance(func, ast.Attribute):
        return False
    owner = func.value
    name = (
        owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else None
    )
    if name == "SystemClock" or (isinstance(owner, ast.Call) and _called_name(owner) == "SystemClock"):
        return func.attr == "now"
    return func.attr in CLOCK_CALLS.get(name or "", set())


def _called_name(call: ast.Call) -> str | None:
    return call.func.id if isinstance(call.func, ast.Name) else None


class _ImportTime(ast.NodeVisitor):
    """Visits what runs at import: module and class bodies, decorators and default values, but
    not the bodies of functions and lambdas (they run when called)."""

    def __init__(self) -> None:
        self.found: list[int] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._signature(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._signature(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for default in [*node.args.defaults, *node.args.kw_defaults]:
            if default is not None:
                self.visit(default)

    def _signature(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for expression in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
            if expression is not None:
                self.visit(expression)

    def visit_Call(self, node: ast.Call) -> None:
        if _reads_clock(node):
            self.found.append(node.lineno)
        self.generic_visit(node)


def import_time_clock_reads(source: str) -> list[int]:
    visitor = _ImportTime()
    visitor.visit(ast.parse(source))
    return visitor.found


def _test_modules() -> Iterator[Path]:
    yield from sorted(TESTS.rglob("*.py"))


def test_no_test_module_reads_the_clock_at_import() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)}:{line}"
        for path in _test_modules()
        for line in import_time_clock_reads(path.read_text())
    ]
    assert offenders == [], (
        "a clock read at import (use a fixed instant or an injected clock):\n" + "\n".join(offenders)
    )


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import UTC, datetime\nNOW = datetime.now(UTC)\n",
        "import datetime\nNOW = datetime.datetime.now(datetime.UTC)\n",
        "import time\nSTARTED = time.monotonic()\n",
        "from domain.shared.clock import utc_now\nclass A:\n    at = utc_now()\n",
        "from domain.shared.clock import SystemClock\nNOW = SystemClock().now()\n",
        "from datetime import UTC, datetime\ndef f(at=datetime.now(UTC)):\n    return at\n",
    ],
)
def test_the_check_sees_a_clock_read_at_import(source: str) -> None:
    assert import_time_clock_reads(source) != []


def test_the_check_leaves_clock_reads_in_functions_alone() -> None:
    source = (
        "from datetime import UTC, datetime\n"
        "def f():\n    return datetime.now(UTC)\n"
        "g = lambda: datetime.now(UTC)\n"
        "NOW = datetime(2026, 3, 1, tzinfo=UTC)\n"
    )
    assert import_time_clock_reads(source) == []
