"""Shared fixtures: real MariaDB, SQLite and Redis on loopback. Nothing here is a mock."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests import databases

os.environ.setdefault("APP_ENV", "testing")
os.environ.setdefault("PENPAY_APP_ENV", "testing")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("PENPAY_SHARED_DIR", REPO_ROOT.parent / "shared"))
REDIS_URL = os.environ.get("PENPAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the repository: the specification and wire anchors."""
    return SHARED_DIR


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """A migrated MariaDB database shared by the whole session (tests use their own ids)."""
    name, url = databases.create_mysql_database()
    yield url
    databases.drop_mysql_database(name)


@pytest.fixture
def fresh_mariadb_url() -> Iterator[str]:
    """A migrated MariaDB database of this test's own, for whole-database assertions (emptied
    back to the template's state for the next test rather than dropped: tests/databases.py)."""
    name, url = databases.create_mysql_database()
    yield url
    databases.recycle_mysql_database(name)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite file of this test's own."""
    return databases.create_sqlite_database(tmp_path / "penpay.db")


@pytest.fixture(params=["mariadb", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Runs a test once on MariaDB and once on SQLite, each with a database of its own."""
    if request.param == "mariadb":
        return str(request.getfixturevalue("fresh_mariadb_url"))
    return str(request.getfixturevalue("sqlite_url"))


@pytest.fixture
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture
def key_prefix() -> str:
    """A Redis key prefix of this test's own."""
    return f"penpay-test:{secrets.token_hex(4)}:"


@pytest.fixture
async def redis_client(redis_url: str, key_prefix: str) -> AsyncIterator[object]:
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_url)
    yield client
    async for key in client.scan_iter(match=f"{key_prefix}*"):
        await client.delete(key)
    await client.aclose()


def pytest_unconfigure(config: pytest.Config) -> None:
    databases.close()


# Every test says what it needs (README, "Markers"), so `-m` picks a subset that is whole.
KINDS = ("unit", "property", "integration", "browser")


# The files that take longest (minutes of mostly waiting on processes and sockets), longest first.
# scripts/test.sh hands files to its processes in collection order (--dist loadfile
# --no-loadscope-reorder): started first, these run beside the many short files instead of being
# the last ones left, each alone on one process, at the end.
LONG_FIRST = (
    "tests/chaos/test_soak.py",
    "tests/demo/test_cluster.py",
    "tests/integration/test_compose.py",
    "tests/consistency/test_database_checks.py",
    "tests/public_surface/test_schemathesis.py",
    "tests/demo/test_command.py",
    "tests/consistency/test_simulator_books.py",
    "tests/sagas/test_crash_recovery.py",
    "tests/consistency/test_check_command.py",
    "tests/sagas/test_deposit_saga.py",
    "tests/sagas/test_withdrawal_saga.py",
)


def _long_first(item: pytest.Item) -> int:
    path = item.nodeid.split("::", 1)[0]
    return LONG_FIRST.index(path) if path in LONG_FIRST else len(LONG_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [item.nodeid for item in items if not any(item.get_closest_marker(k) for k in KINDS)]
    if unmarked:
        raise pytest.UsageError(
            f"tests without one of the markers {', '.join(KINDS)} (see pyproject.toml):\n  "
            + "\n  ".join(unmarked)
        )
    items.sort(key=_long_first)  # stable: each file's tests keep their order
