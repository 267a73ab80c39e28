"""A scratch MariaDB database `penpay_bench_<random>` for one run, created and dropped by the bench."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pymysql
from sqlalchemy.engine import make_url

# The test user of scripts/services.sh (grants on `penpay%`); root works too.
DEFAULT_ADMIN_URL = "mysql+asyncmy://penpay:penpay@127.0.0.1:3306/"


def connect_args(url: str, database: str | None = None) -> dict[str, Any]:
    parsed = make_url(url)
    args: dict[str, Any] = {
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 3306,
        "user": parsed.username or "root",
        "password": parsed.password or "",
    }
    if database:
        args["db"] = database
    return args


def database_url(admin_url: str, name: str) -> str:
    return (
        make_url(admin_url)
        .set(drivername="mysql+asyncmy", database=name)
        .render_as_string(hide_password=False)
    )


@contextmanager
def scratch_database(admin_url: str, *, migrated: bool = True) -> Iterator[tuple[str, str]]:
    """(name, url) of a new database, migrated with Alembic; dropped on the way out."""
    name = f"penpay_bench_{secrets.token_hex(5)}"
    connection = pymysql.connect(**connect_args(admin_url))
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    finally:
        connection.close()
    url = database_url(admin_url, name)
    try:
        if migrated:
            from persistence import migrate

            # in a thread of its own: Alembic runs its own event loop, and callers may be inside one
            with ThreadPoolExecutor(1) as pool:
                pool.submit(migrate.upgrade, url).result()
        yield name, url
    finally:
        connection = pymysql.connect(**connect_args(admin_url))
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            connection.close()
