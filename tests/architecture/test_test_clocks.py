"""No test module reads the clock when it is imported, nor the wall clock when it runs.

A "now" taken at import is as old as the test session when a test uses it: on a slow run, tokens
issued from it expire before they are checked and windows computed from it close (it once failed
tests/identity/test_access_tokens.py on a 27-minute run). Tests take time from an injected clock
(FixedClock) or a fixed instant. At run time too: a test that reads the wall clock passes or fails
by when it runs. The one exception, tests/clocks.py's the_processes_clock, is for tests that compare
with stamps made by code that takes no injected clock (separate processes, UUIDv7 ids)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.architecture.test_wall_clock import wall_clock_reads

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]

# attribute calls that read the wall clock, by the name they are called on
CLOCK_CALLS = {
    "datetime": {"now", "utcnow", "today"},
    "date": {"today"},
    "time": {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter"},
}
CLOCK_FUNCTIONS = {"utc_now"}  # domain.shared.clock.utc_now

# The functions ("file::function") that may read the wall clock when they run, each with its reason.
RUN_TIME_ALLOWED = {
    "tests/clocks.py::the_processes_clock": "for stamps made by code that takes no injected clock",
    "tests/unit/test_clock.py::test_system_clock_is_utc_aware": "SystemClock's own test: it reads it",
}


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


def run_time_clock_reads(source: str, allowed: frozenset[str] = frozenset()) -> list[int]:
    """Lines that read the wall clock anywhere (test_wall_clock's scan), or make a SystemClock to
    hand to the code under test (the same read, one call later), outside the functions named in
    `allowed`. time.monotonic measures a duration, not "now": it is left alone here."""
    tree = ast.parse(source)
    found = set(wall_clock_reads(source))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called_name(node) == "SystemClock":
            found.add(node.lineno)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in allowed:
            found -= set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return sorted(found)


def _allowed_in(relative: str) -> frozenset[str]:
    return frozenset(entry.split("::")[1] for entry in RUN_TIME_ALLOWED if entry.split("::")[0] == relative)


def run_time_offenders(tests: Path) -> list[str]:
    root = tests.parent
    return [
        f"{relative}:{line}"
        for path in sorted(tests.rglob("*.py"))
        for relative in [path.relative_to(root).as_posix()]
        for line in run_time_clock_reads(path.read_text(), _allowed_in(relative))
    ]


def test_no_test_reads_the_wall_clock_when_it_runs() -> None:
    offenders = run_time_offenders(TESTS)
    assert offenders == [], (
        "a wall-clock read in a test (inject a FixedClock or SteppingClock, or pass a fixed instant;"
        " to compare with a process's own stamps, use tests.clocks.the_processes_clock):\n"
        + "\n".join(offenders)
    )


def test_every_function_allowed_the_wall_clock_still_exists() -> None:
    """An entry left behind after its function is gone would excuse the next one of that name."""
    missing = []
    for entry in RUN_TIME_ALLOWED:
        relative, function = entry.split("::")
        path = TESTS.parent / relative
        defined = path.exists() and any(
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function
            for node in ast.walk(ast.parse(path.read_text()))
        )
        if not defined:
            missing.append(entry)
    assert missing == []


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import UTC, datetime\ndef test_f():\n    assert datetime.now(UTC)\n",
        "import time\nasync def f():\n    return time.time()\n",
        "from domain.shared.clock import utc_now\ndef f():\n    return utc_now()\n",
        "from domain.shared.clock import SystemClock\ndef f(make):\n    return make(clock=SystemClock())\n",
        "import datetime\nclass A:\n    def f(self):\n        return datetime.datetime.now()\n",
    ],
)
def test_the_check_sees_a_wall_clock_read_when_a_test_runs(source: str) -> None:
    assert run_time_clock_reads(source) != []


def test_the_check_leaves_injected_clocks_durations_and_the_helper_alone() -> None:
    source = (
        "import time\nfrom tests.clocks import SteppingClock, the_processes_clock\n"
        "def f(clock, stack):\n"
        "    started = time.monotonic()\n"
        "    return clock.now(), stack.clock.now(), the_processes_clock(), time.monotonic() - started\n"
    )
    assert run_time_clock_reads(source) == []


def test_the_run_time_check_allows_only_the_named_function(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "clocks.py").write_text(
        "import time\ndef the_processes_clock():\n    return time.time()\n"
        "def other():\n    return time.time()\n"
    )
    (tests / "test_x.py").write_text("import time\ndef the_processes_clock():\n    return time.time()\n")
    assert run_time_offenders(tests) == ["tests/clocks.py:5", "tests/test_x.py:3"]
