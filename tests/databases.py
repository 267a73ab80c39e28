"""Real databases for the tests: a MariaDB database of their own, and SQLite files.

Each test session gets its own MariaDB database (penpay_t_<random>), migrated with Alembic
and dropped at the end, so parallel runs and developers' data never meet.
"""

from __future__ import annotations

import os
import secrets

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


def drop_mysql_database(name: str) -> None:
    connection = _admin()
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        connection.close()
