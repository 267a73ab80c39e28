"""Real databases for the tests: a MariaDB database of their own, and SQLite files.

Each test session gets its own MariaDB database (penpay_t_<random>), migrated with Alembic
and dropped at the end, so parallel runs and developers' data never meet.

Alembic runs once per test process, into a template (a MariaDB database and a SQLite file);
every further migrated database is a copy of it: the template's own CREATE TABLE and CREATE
TRIGGER statements and the rows the migrations seed. Running the thirteen migrations took most of a fresh
database's set-up (2 to 4 s on a loaded machine, against well under 1 s for the copy), and
many tests take a fresh one. The copy is made when a test asks for it: a copy made ahead in a
background thread overlapped a little more, but a CI run had a worker die of a segfault while that
thread ran, so it went (suspected, not proven).
tests/integration/test_test_databases.py proves a copy is the
migrated schema, and the migration tests still migrate with Alembic.

Even a copy is slow next to what the saga tests do with it: its 37 CREATE TABLEs (a file each) took
1.2 to 2.4 s and the DROP 0.4 to 0.6 s, against 0.1 to 0.2 s to start both simulators, the gateway
and the workers (issue 20, measured on the shared 2-core machine). So a test's database is not
dropped when it ends but emptied back to the template's rows and counters (`recycle_mysql_database`),
and the next test that asks for one gets it: a database of its own, as a copy is. One whose schema
the test changed, or that cannot be emptied at once (a lock held), is dropped instead.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import sqlite3
import tempfile
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import pymysql

from persistence import migrate

MYSQL_HOST = os.environ.get("PENPAY_TEST_DB_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("PENPAY_TEST_DB_PORT", "3306"))
MYSQL_USER = os.environ.get("PENPAY_TEST_DB_USER", "penpay")
MYSQL_PASSWORD = os.environ.get("PENPAY_TEST_DB_PASSWORD", "penpay")
# The async driver of the tests' URLs: asyncmy, production's; aiomysql works too.
MYSQL_DRIVER = os.environ.get("PENPAY_TEST_DB_DRIVER", "asyncmy")


def _admin() -> pymysql.connections.Connection:
    return pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, password=MYSQL_PASSWORD)


def mysql_url(database: str) -> str:
    return f"mysql+{MYSQL_DRIVER}://{MYSQL_USER}:{MYSQL_PASSWORD}@{MYSQL_HOST}:{MYSQL_PORT}/{database}"


def _upgrade(url: str) -> None:
    """Alembic's env runs an event loop of its own: in a thread, so a test inside one may call this."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(migrate.upgrade, url).result()


def _create_empty(cursor: pymysql.cursors.Cursor, kind: str = "") -> str:
    name = f"penpay_t_{kind}{secrets.token_hex(6)}"
    cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    return name


class MysqlTemplate:
    """A database migrated with Alembic once per process, and what copying it takes."""

    def __init__(self) -> None:
        connection = _admin()
        try:
            with connection.cursor() as cursor:
                self.name = _create_empty(cursor, "tpl_")
        finally:
            connection.close()
        atexit.register(drop_mysql_database, self.name)
        _upgrade(mysql_url(self.name))
        connection = _admin()
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT table_name FROM information_schema.tables"
                    " WHERE table_schema = %s AND table_type = 'BASE TABLE' ORDER BY table_name",
                    (self.name,),
                )
                self.tables = [str(row[0]) for row in cursor.fetchall()]
                self.ddl: list[str] = []
                self.seeded: list[str] = []  # tables the migrations put rows in
                for table in self.tables:
                    cursor.execute(f"SHOW CREATE TABLE `{self.name}`.`{table}`")
                    self.ddl.append(str(cursor.fetchone()[1]))
                    cursor.execute(f"SELECT 1 FROM `{self.name}`.`{table}` LIMIT 1")
                    if cursor.fetchone() is not None:
                        self.seeded.append(table)
                # The append-only guards (audit log, ledger entries) are triggers: their statements
                # and the sql_mode each was made under.
                cursor.execute(
                    "SELECT trigger_name, sql_mode FROM information_schema.triggers"
                    " WHERE trigger_schema = %s ORDER BY event_object_table, action_timing,"
                    " event_manipulation, action_order",
                    (self.name,),
                )
                self.triggers: list[tuple[str, str]] = []
                for trigger, sql_mode in cursor.fetchall():
                    cursor.execute(f"SHOW CREATE TRIGGER `{self.name}`.`{trigger}`")
                    self.triggers.append((str(sql_mode), str(cursor.fetchone()[2])))
        finally:
            connection.close()

        self.fingerprint = schema_fingerprint(self.name)
        self.counters = auto_increments(self.name)
        # The guards that refuse a DELETE: lifted while a used database is emptied, then put back.
        self.delete_guards = {
            table: statement
            for table in self.tables
            for mode, statement in self.triggers
            if f" BEFORE DELETE ON {table} " in statement or f" BEFORE DELETE ON `{table}` " in statement
        }
        self.guard_modes = {statement: mode for mode, statement in self.triggers}

    def copy_into(self, cursor: pymysql.cursors.Cursor, name: str) -> None:
        cursor.execute(f"USE `{name}`")
        # Tables come in name order, not dependency order: the foreign keys are checked once all exist.
        cursor.execute("SET SESSION foreign_key_checks = 0")
        try:
            for statement in self.ddl:
                cursor.execute(statement)
            for table in self.seeded:
                cursor.execute(f"INSERT INTO `{name}`.`{table}` SELECT * FROM `{self.name}`.`{table}`")
        finally:
            cursor.execute("SET SESSION foreign_key_checks = 1")
        cursor.execute("SELECT @@SESSION.sql_mode")
        sql_mode = cursor.fetchone()[0]
        try:
            for trigger_mode, statement in self.triggers:
                cursor.execute("SET SESSION sql_mode = %s", (trigger_mode,))
                cursor.execute(statement)
        finally:
            cursor.execute("SET SESSION sql_mode = %s", (sql_mode,))

    def empty(self, cursor: pymysql.cursors.Cursor, name: str) -> None:
        """Back to a fresh copy: the template's rows in its seeded tables, every other table empty,
        every AUTO_INCREMENT where the template's is. The caller commits."""
        cursor.execute(f"USE `{name}`")
        cursor.execute(
            " UNION ALL ".join(f"(SELECT '{table}' FROM `{table}` LIMIT 1)" for table in self.tables)
        )
        used = [str(row[0]) for row in cursor.fetchall()]
        cursor.execute("SET SESSION foreign_key_checks = 0")
        cursor.execute("SELECT @@SESSION.sql_mode")
        sql_mode = cursor.fetchone()[0]
        try:
            for table in used:
                guard = self.delete_guards.get(table)
                if guard is not None:
                    cursor.execute(f"DROP TRIGGER `{_trigger_name(guard)}`")
                cursor.execute(f"DELETE FROM `{table}`")
                if guard is not None:
                    cursor.execute("SET SESSION sql_mode = %s", (self.guard_modes[guard],))
                    cursor.execute(guard)
                    cursor.execute("SET SESSION sql_mode = %s", (sql_mode,))
            for table in self.seeded:
                if table not in used:
                    cursor.execute(f"DELETE FROM `{table}`")  # emptied by the test: no guard on these
                cursor.execute(f"INSERT INTO `{table}` SELECT * FROM `{self.name}`.`{table}`")
        finally:
            cursor.execute("SET SESSION sql_mode = %s", (sql_mode,))
            cursor.execute("SET SESSION foreign_key_checks = 1")
        for table, counter in auto_increments(name).items():
            if counter != self.counters.get(table):
                cursor.execute(f"ALTER TABLE `{table}` AUTO_INCREMENT = {self.counters.get(table, 1)}")


def _trigger_name(statement: str) -> str:
    return statement.split(" TRIGGER ", 1)[1].split(None, 1)[0].strip("`")


def schema_fingerprint(name: str) -> tuple[tuple[object, ...], ...]:
    """What a test could change of a database's schema: tables, columns, indexes, foreign keys,
    checks, triggers, routines, views and events (compared with the template's before reuse)."""
    queries = [
        "SELECT table_name, table_type, engine, table_collation FROM information_schema.tables"
        " WHERE table_schema = %s ORDER BY 1",
        "SELECT table_name, column_name, ordinal_position, column_type, is_nullable, column_default,"
        " extra, collation_name FROM information_schema.columns WHERE table_schema = %s ORDER BY 1, 3",
        "SELECT table_name, index_name, seq_in_index, column_name, non_unique"
        " FROM information_schema.statistics WHERE table_schema = %s ORDER BY 1, 2, 3",
        "SELECT constraint_name, table_name, referenced_table_name, update_rule, delete_rule"
        " FROM information_schema.referential_constraints WHERE constraint_schema = %s ORDER BY 1, 2",
        "SELECT constraint_name, table_name, check_clause FROM information_schema.check_constraints"
        " WHERE constraint_schema = %s ORDER BY 1, 2",
        "SELECT trigger_name, event_object_table, action_timing, event_manipulation, action_statement,"
        " sql_mode FROM information_schema.triggers WHERE trigger_schema = %s ORDER BY 1",
        "SELECT COUNT(*) FROM information_schema.routines WHERE routine_schema = %s",
        "SELECT COUNT(*) FROM information_schema.views WHERE table_schema = %s",
        "SELECT COUNT(*) FROM information_schema.events WHERE event_schema = %s",
    ]
    connection = _admin()
    try:
        with connection.cursor() as cursor:
            found: list[tuple[object, ...]] = []
            for query in queries:
                cursor.execute(query, (name,))
                found += [(query[:40], *row) for row in cursor.fetchall()]
            return tuple(found)
    finally:
        connection.close()


def auto_increments(name: str) -> dict[str, int]:
    connection = _admin()
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT table_name, auto_increment FROM information_schema.tables"
                " WHERE table_schema = %s AND auto_increment IS NOT NULL",
                (name,),
            )
            return {str(table): int(counter) for table, counter in cursor.fetchall()}
    finally:
        connection.close()


@cache
def mysql_template() -> MysqlTemplate:
    return MysqlTemplate()


# Databases a finished test handed back, emptied only when the next test of this process asks for
# one: a test's fixtures are torn down in an order of their own (a gateway fixture set up before the
# database's can outlive it and still write), so emptying at hand-back raced those writers.
_recycled: list[str] = []


def recycle_mysql_database(name: str) -> None:
    """A test is done with its migrated database: keep it for the next test of this process, which
    empties it (`_reuse`) or drops it."""
    _recycled.append(name)


def _reuse(template: MysqlTemplate, name: str) -> bool:
    """Empty a handed-back database for a new test: only when nobody is connected to it any more,
    its schema is still the template's and the emptying takes no more than a few seconds."""
    try:
        connection = _admin()
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT COUNT(*) FROM information_schema.processlist WHERE db = %s", (name,))
                if cursor.fetchone()[0]:
                    return False  # something of the last test still holds it: not ours to empty
        finally:
            connection.close()
        if schema_fingerprint(name) != template.fingerprint:
            return False
        connection = _admin()
        try:
            with connection.cursor() as cursor:
                # A lock a leaked transaction holds would stall the emptying: drop such a database.
                cursor.execute("SET SESSION innodb_lock_wait_timeout = 3, lock_wait_timeout = 3")
                template.empty(cursor, name)
            connection.commit()
        finally:
            connection.close()
        return True
    except pymysql.err.MySQLError:
        return False


def _new_mysql_database(template: MysqlTemplate | None) -> str:
    while template is not None and _recycled:
        name = _recycled.pop()
        if _reuse(template, name):
            return name
        drop_mysql_database(name)
    connection = _admin()
    try:
        with connection.cursor() as cursor:
            name = _create_empty(cursor)
            if template is not None:
                template.copy_into(cursor, name)
        connection.commit()
    finally:
        connection.close()
    return name


def create_mysql_database(*, migrated: bool = True) -> tuple[str, str]:
    """Create an empty (optionally migrated: a copy of the template) database; returns (name, url)."""
    name = _new_mysql_database(mysql_template() if migrated else None)
    return name, mysql_url(name)


@cache
def sqlite_template() -> Path:
    """A SQLite file migrated with Alembic once per process, checkpointed so the file is whole."""
    directory = Path(tempfile.mkdtemp(prefix="penpay-sqlite-template-"))
    atexit.register(shutil.rmtree, directory, True)
    path = directory / "template.db"
    _upgrade(f"sqlite+aiosqlite:///{path}")
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()
    return path


def create_sqlite_database(path: Path) -> str:
    """A migrated SQLite database at `path` (a copy of the template); returns its URL."""
    shutil.copyfile(sqlite_template(), path)
    return f"sqlite+aiosqlite:///{path}"


_DROP_DB_ERROR = 1010  # MariaDB: "Error dropping database (can't rmdir ..., Directory not empty)"


def drop_mysql_database(name: str) -> None:
    """Drop a test's throwaway database. MariaDB now and then cannot remove the directory at once
    (a file of a just-finished statement still there: errno 39); the drop is tried again, and a
    directory left behind under a random name harms no other test, so it never fails one."""
    connection = _admin()
    try:
        with connection.cursor() as cursor:
            for attempt in range(5):
                try:
                    cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
                    return
                except pymysql.err.OperationalError as error:
                    if error.args[0] != _DROP_DB_ERROR:
                        raise
                    time.sleep(0.2 * (attempt + 1))
            warnings.warn(f"MariaDB left the directory of test database {name}", stacklevel=2)
    finally:
        connection.close()


def close() -> None:
    """Drop this process's template and the emptied databases waiting for a test (tests/conftest.py,
    at the end of the session; atexit drops the template too, but an xdist worker may leave without
    running atexit)."""
    while _recycled:
        drop_mysql_database(_recycled.pop())
    if mysql_template.cache_info().currsize:
        drop_mysql_database(mysql_template().name)
