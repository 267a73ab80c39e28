"""Real databases for the tests: a MariaDB database of their own, and SQLite files.

Each test session gets its own MariaDB database (penpay_t_<random>), migrated with Alembic
and dropped at the end, so parallel runs and developers' data never meet.
"""

from __future__ import annotations

import os
import secrets
import time
import warnings

import pymysql

from persistence import migrate

MYSQL_HOST = os.environ.get("PENPAY_TEST_DB_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("PENPAY_TEST_DB_PORT", "3306"))
MYSQL_USER = os.environ.get("PENPAY_TEST_DB_USER", "penpay")
MYSQL_PASSWORD = os.environ.get("PENPAY_TEST_DB_PASSWORD", "penpay")


def _admin() -> pymysql.connections.Connection:
    return pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, password=MYSQL_PASSWORD)


def mysql_url(database: str) -> str:
    return f"mysql+aiomysql://{MYSQL_USER}:{MYSQL_PASSWORD}@{MYSQL_HOST}:{MYSQL_PORT}/{database}"


def create_mysql_database(*, migrated: bool = True) -> tuple[str, str]:
    """Create an empty (optionally migrated) database; returns (name, url)."""
    name = f"penpay_t_{secrets.token_hex(6)}"
    connection = _admin()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    finally:
        connection.close()
    url = mysql_url(name)
    if migrated:
        migrate.upgrade(url)
    return name, url


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
