"""The tests' migrated databases are copies of a per-process template (tests/databases.py): a copy
must be exactly what Alembic makes, or every test that takes one would test another schema."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest

from persistence import migrate
from tests import databases

pytestmark = pytest.mark.integration


def _mysql_shape(name: str) -> dict[str, tuple[str, int]]:
    """Each table's CREATE TABLE statement and row count, each trigger's statement and sql_mode,
    and how many routines, views and events there are."""
    connection = databases._admin()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = %s AND table_type = 'BASE TABLE'",
                (name,),
            )
            shape: dict[str, tuple[str, int]] = {}
            for (table,) in cursor.fetchall():
                cursor.execute(f"SHOW CREATE TABLE `{name}`.`{table}`")
                ddl = str(cursor.fetchone()[1])
                cursor.execute(f"SELECT COUNT(*) FROM `{name}`.`{table}`")
                shape[str(table)] = (ddl, int(cursor.fetchone()[0]))
            cursor.execute(
                "SELECT trigger_name, sql_mode FROM information_schema.triggers WHERE trigger_schema = %s",
                (name,),
            )
            for trigger, sql_mode in cursor.fetchall():
                cursor.execute(f"SHOW CREATE TRIGGER `{name}`.`{trigger}`")
                shape[f"trigger {trigger}"] = (f"{sql_mode}: {cursor.fetchone()[2]}", 0)
            for kind, query in [
                ("routines", "SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = %s"),
                ("views", "SELECT COUNT(*) FROM information_schema.views WHERE table_schema = %s"),
                ("events", "SELECT COUNT(*) FROM information_schema.events WHERE event_schema = %s"),
            ]:
                cursor.execute(query, (name,))
                shape[kind] = ("", int(cursor.fetchone()[0]))
            return shape
    finally:
        connection.close()


def _mysql_rows(name: str, table: str) -> list[tuple[object, ...]]:
    connection = databases._admin()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT * FROM `{name}`.`{table}` ORDER BY 1")
            return list(cursor.fetchall())
    finally:
        connection.close()


@pytest.fixture
def migrated_by_alembic() -> Iterator[str]:
    name, url = databases.create_mysql_database(migrated=False)
    migrate.upgrade(url)
    yield name
    databases.drop_mysql_database(name)


def test_a_mariadb_copy_has_alembics_schema_and_the_templates_rows(
    fresh_mariadb_url: str, migrated_by_alembic: str
) -> None:
    copy = fresh_mariadb_url.rsplit("/", 1)[1]
    copied, migrated = _mysql_shape(copy), _mysql_shape(migrated_by_alembic)
    assert set(copied) == set(migrated) and len(copied) > 30
    assert any(key.startswith("trigger ") for key in migrated)  # the append-only guards
    for table, (ddl, rows) in migrated.items():
        assert copied[table] == (ddl, rows), table
    template = databases.mysql_template()
    assert template.seeded  # the migrations seed rows (accounts, the audit chain's head, the revision)
    for table in template.seeded:
        assert _mysql_rows(copy, table) == _mysql_rows(template.name, table), table


def test_a_mariadb_copy_keeps_the_foreign_keys(fresh_mariadb_url: str) -> None:
    copy = fresh_mariadb_url.rsplit("/", 1)[1]
    connection = databases._admin()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"USE `{copy}`")
            with pytest.raises(pymysql.err.IntegrityError) as refused:
                cursor.execute(
                    "INSERT INTO ledger_entries (id, posting_id, account_id, side, amount_cents,"
                    " amount_currency, created_at) VALUES (UNHEX(REPEAT('11', 16)), UNHEX(REPEAT('22', 16)),"
                    " UNHEX(REPEAT('33', 16)), 'DEBIT', 100, 'KES', '2026-01-01 00:00:00')"
                )
            assert refused.value.args[0] == 1452  # a foreign key constraint fails
    finally:
        connection.close()


def test_a_mariadb_copy_keeps_the_append_only_guards(fresh_mariadb_url: str) -> None:
    copy = fresh_mariadb_url.rsplit("/", 1)[1]
    connection = databases._admin()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"USE `{copy}`")
            cursor.execute("SET SESSION foreign_key_checks = 0")  # a row of its own, no posting needed
            cursor.execute(
                "INSERT INTO ledger_entries (id, posting_id, account_id, side, amount_cents,"
                " amount_currency, created_at) VALUES (UNHEX(REPEAT('11', 16)), UNHEX(REPEAT('22', 16)),"
                " UNHEX(REPEAT('33', 16)), 'DEBIT', 100, 'KES', '2026-01-01 00:00:00')"
            )
            with pytest.raises(pymysql.err.MySQLError, match="append-only"):
                cursor.execute("UPDATE ledger_entries SET amount_cents = 1")
            with pytest.raises(pymysql.err.MySQLError, match="append-only"):
                cursor.execute("DELETE FROM ledger_entries")
    finally:
        connection.close()


def _write_everywhere(name: str) -> None:
    """Rows in the guarded tables, the seeded ones changed, counters moved, as a saga test leaves them."""
    connection = databases._admin()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"USE `{name}`")
            cursor.execute("SET SESSION foreign_key_checks = 0")
            cursor.execute(
                "INSERT INTO ledger_entries (id, posting_id, account_id, side, amount_cents,"
                " amount_currency, created_at) VALUES (UNHEX(REPEAT('11', 16)), UNHEX(REPEAT('22', 16)),"
                " UNHEX(REPEAT('33', 16)), 'DEBIT', 100, 'KES', '2026-01-01 00:00:00')"
            )
            cursor.execute("DELETE FROM alembic_version")  # a seeded table left empty
            cursor.execute("UPDATE audit_chain_head SET row_count = row_count + 7")
            cursor.execute(
                "SELECT table_name FROM information_schema.columns WHERE table_schema = %s AND extra LIKE %s",
                (name, "%auto_increment%"),
            )
            counted = [str(row[0]) for row in cursor.fetchall()]
        connection.commit()
    finally:
        connection.close()
    assert counted  # the shape below compares AUTO_INCREMENT=N in each CREATE TABLE


def test_a_used_mariadb_database_is_emptied_back_into_a_fresh_copy() -> None:
    name, _ = databases.create_mysql_database()
    fresh = _mysql_shape(name)
    _write_everywhere(name)
    assert _mysql_shape(name) != fresh
    databases.recycle_mysql_database(name)
    again, _ = databases.create_mysql_database()  # the next test of this process gets it
    try:
        assert again == name
        assert _mysql_shape(again) == fresh
        for table in databases.mysql_template().seeded:
            assert _mysql_rows(again, table) == _mysql_rows(databases.mysql_template().name, table), table
    finally:
        databases.drop_mysql_database(again)


def _exists(name: str) -> bool:
    connection = databases._admin()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = %s", (name,))
            return bool(cursor.fetchone()[0])
    finally:
        connection.close()


def test_a_database_whose_schema_a_test_changed_is_dropped_not_handed_out() -> None:
    name, _ = databases.create_mysql_database()
    connection = databases._admin()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE `{name}`.`transactions` ADD COLUMN scratch INT NULL")
    finally:
        connection.close()
    databases.recycle_mysql_database(name)
    other, _ = databases.create_mysql_database()
    try:
        assert other != name
        assert not _exists(name)
    finally:
        databases.drop_mysql_database(other)


def test_a_database_something_still_holds_is_dropped_not_emptied_under_it() -> None:
    """A fixture torn down after the database's (a gateway still running) may still write to it: a
    database with a connection left on it is never handed to the next test."""
    name, _ = databases.create_mysql_database()
    databases.recycle_mysql_database(name)
    straggler = databases._admin()
    try:
        with straggler.cursor() as cursor:
            cursor.execute(f"USE `{name}`")
        other, _ = databases.create_mysql_database()
        try:
            assert other != name
        finally:
            databases.drop_mysql_database(other)
    finally:
        straggler.close()
    assert not _exists(name)


def _sqlite_shape(path: Path) -> list[tuple[object, ...]]:
    """Each object's definition as its set of lines: Alembic's batch mode (a table rebuilt to add a
    foreign key on SQLite) writes the constraints in an order that changes from run to run."""
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")
        return [
            (kind, name, table, sorted(line.rstrip(", ") for line in str(sql).splitlines()))
            for kind, name, table, sql in rows
        ]
    finally:
        connection.close()


def test_a_sqlite_copy_has_alembics_schema(sqlite_url: str, tmp_path: Path) -> None:
    by_alembic = tmp_path / "alembic.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{by_alembic}")
    copy = Path(sqlite_url.removeprefix("sqlite+aiosqlite:///"))
    assert _sqlite_shape(copy) == _sqlite_shape(by_alembic)
