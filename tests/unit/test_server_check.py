"""The database server check `penpay migrate` makes before it changes anything."""

from __future__ import annotations

import pytest

from penpay.cli import _setting_problem
from persistence.server_check import UnsupportedDatabase, require_supported

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("dialect", "is_mariadb", "version"),
    [
        ("mysql", True, (10, 6, 0)),
        ("mysql", True, (10, 11, 19)),
        ("mariadb", True, (11, 4, 2)),
        ("sqlite", False, (3, 40, 1)),  # the embedded default
    ],
)
def test_mariadb_from_10_6_and_sqlite_are_taken(
    dialect: str, is_mariadb: bool, version: tuple[int, ...]
) -> None:
    require_supported(dialect, is_mariadb=is_mariadb, version=version)


def test_mysql_is_refused_naming_the_server_and_what_it_lacks() -> None:
    with pytest.raises(UnsupportedDatabase) as refused:
        require_supported("mysql", is_mariadb=False, version=(8, 0, 36))
    message = str(refused.value)
    assert "MySQL server (8.0.36)" in message
    assert "MariaDB 10.6 or later" in message and "RETURNING" in message


@pytest.mark.parametrize("version", [(10, 5, 23), (10, 3, 39), None])
def test_mariadb_before_10_6_is_refused_naming_its_version(version: tuple[int, ...] | None) -> None:
    with pytest.raises(UnsupportedDatabase, match=r"needs 10\.6 or later \(JSON_TABLE"):
        require_supported("mysql", is_mariadb=True, version=version)


def test_the_command_line_reports_it_as_a_setting_problem() -> None:
    error = UnsupportedDatabase("PENPAY_DATABASE_URL names a MySQL server (8.0.36)")
    assert _setting_problem(error) is error  # one line on stderr and exit 2, not a traceback
