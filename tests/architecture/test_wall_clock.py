"""Below the composition root, nothing reads the wall clock: time is a dependency.

Domain, application and the adapters take "now" from the clock port (domain/shared/clock.py) that
the composition root (penpay/bootstrap.py, penpay/wiring) hands them, or as an argument. A module
that calls datetime.now or time.time itself cannot be driven by a test's FixedClock, and its stamps
disagree with the ones its caller's clock makes. The composition root, the CLI and the proving tools
above it are where the process's clock is chosen, so they are not scanned.

(time.monotonic and friends measure durations, not "now": they are left alone.)"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.architecture.test_layers import FLOORS, ROOT

pytestmark = pytest.mark.unit

# Attribute calls that read the wall clock, by the name they are called on.
WALL_CLOCK_CALLS = {
    "datetime": {"now", "utcnow", "today"},
    "date": {"today"},
    "time": {"time", "time_ns"},
}
# domain.shared.clock.utc_now: the domain's own reading, a wall-clock read anywhere else.
WALL_CLOCK_FUNCTIONS = {"utc_now"}

SCANNED = sorted(package for package, floor in FLOORS.items() if floor < FLOORS["penpay"])

# Files (or folders, ending in "/") that may read the wall clock, each with its reason.
ALLOWED = {
    "domain/shared/clock.py": "the clock itself: SystemClock is the one wall-clock reading",
    "domain/shared/ids.py": "UUIDv7: the id's leading bits are the wall clock's milliseconds by design",
    "mpesa_adapter/simulator/": "the simulators stand in for the providers' own clocks",
    "deriv_gateway/simulator/": "the simulators stand in for the providers' own clocks",
    # The audit head's updated_at (outside the hash chain): seal_pending has no clock to take it from.
    "persistence/audit.py": "not yet injected: the sealer's head-row stamp",
}


def _owner_name(func: ast.Attribute) -> str | None:
    owner = func.value
    if isinstance(owner, ast.Name):
        return owner.id
    if isinstance(owner, ast.Attribute):
        return owner.attr  # datetime.datetime.now, time.time via a module alias's attribute
    return None


def wall_clock_reads(source: str, *, domain: bool = False) -> list[int]:
    """Lines of `source` that read the wall clock (utc_now counts outside the domain only)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name):
            if func.id in WALL_CLOCK_FUNCTIONS and not domain:
                found.append(node.lineno)
        elif isinstance(func, ast.Attribute):
            if func.attr in WALL_CLOCK_CALLS.get(_owner_name(func) or "", set()):
                found.append(node.lineno)
    return sorted(found)


def _allowed(relative: str) -> bool:
    return any(relative == path or (path.endswith("/") and relative.startswith(path)) for path in ALLOWED)


def _scanned_files(root: Path) -> Iterator[tuple[str, Path]]:
    for package in SCANNED:
        for path in sorted((root / package).rglob("*.py")):
            yield path.relative_to(root).as_posix(), path


def offenders(root: Path) -> list[str]:
    return [
        f"{relative}:{line}"
        for relative, path in _scanned_files(root)
        if not _allowed(relative)
        for line in wall_clock_reads(path.read_text(), domain=relative.startswith("domain/"))
    ]


def test_nothing_below_the_composition_root_reads_the_wall_clock() -> None:
    assert offenders(ROOT) == [], (
        "a wall-clock read below the composition root (take a Clock, or `now`, from the caller):\n"
        + "\n".join(offenders(ROOT))
    )


def test_every_allowed_file_still_exists() -> None:
    """An entry left behind after its file is gone (or fixed and moved) would excuse the next one."""
    assert [path for path in ALLOWED if not (ROOT / path).exists()] == []


@pytest.mark.parametrize(
    "source",
    [
        "from datetime import UTC, datetime\ndef f():\n    return datetime.now(UTC)\n",
        "import datetime\ndef f():\n    return datetime.datetime.now(datetime.UTC)\n",
        "import time\nclass A:\n    def f(self):\n        return time.time()\n",
        "import time\nf = lambda: time.time_ns()\n",
        "from datetime import date\ndef f():\n    return date.today()\n",
        "from domain.shared.clock import utc_now\ndef f():\n    return utc_now()\n",
        "from dataclasses import field\nfrom datetime import datetime\n"
        "x = field(default_factory=lambda: datetime.now())\n",
    ],
)
def test_the_check_sees_a_wall_clock_read(source: str) -> None:
    assert wall_clock_reads(source) != []


def test_the_check_leaves_injected_clocks_and_durations_alone() -> None:
    source = (
        "import time\nfrom datetime import UTC, datetime\n"
        "def f(clock, now):\n"
        "    started = time.monotonic()\n"
        "    return clock.now(), now, datetime(2026, 3, 1, tzinfo=UTC), time.monotonic() - started\n"
    )
    assert wall_clock_reads(source) == []
    assert wall_clock_reads("def f():\n    return utc_now()\n", domain=True) == []


def test_the_check_walks_the_floors_below_the_root(tmp_path: Path) -> None:
    for name, text in {
        "workers/bus.py": "import time\ndef f():\n    return time.time()\n",
        "mpesa_adapter/simulator/clock.py": "import time\ndef f():\n    return time.time()\n",
        "penpay/bootstrap.py": "import time\ndef f():\n    return time.time()\n",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert offenders(tmp_path) == ["workers/bus.py:3"]
