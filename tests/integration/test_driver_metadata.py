"""The parsed-once result metadata (persistence.driver_metadata) gives what aiomysql's own parsing
gives, on MariaDB, for every kind of column the schema uses, the first time and from the cache; and
asyncmy, production's driver, reads the same rows and descriptions as aiomysql."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiomysql import connection as aiomysql_connection
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from persistence import driver_metadata
from persistence.engine import create_engine

pytestmark = pytest.mark.integration

WIDE = text(
    "SELECT 1 AS n, CAST(12.34 AS DECIMAL(12,2)) AS d, 'h\u00e9llo' AS t, CAST('ab' AS BINARY(2)) AS b,"
    " CAST('2026-01-02 03:04:05.123456' AS DATETIME(6)) AS at, NULL AS nothing,"
    " JSON_OBJECT('a', 1) AS j, CAST(9007199254740993 AS UNSIGNED) AS big"
)
# Same name, another type: its packet differs, so it is parsed on its own.
SAME_NAME_OTHER_TYPE = (text("SELECT 7 AS x"), text("SELECT 'seven' AS x"))


def _on(url: str, driver: str) -> str:
    return make_url(url).set(drivername=f"mysql+{driver}").render_as_string(hide_password=False)


@pytest.fixture
async def engine(mariadb_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(_on(mariadb_url, "aiomysql"), pool_size=1)  # an operator's URL may name it
    yield engine
    await engine.dispose()


@pytest.fixture
async def asyncmy_engine(mariadb_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(_on(mariadb_url, "asyncmy"), pool_size=1)
    yield engine
    await engine.dispose()


async def _read(engine: AsyncEngine, statement: Any) -> tuple[Any, list[tuple[Any, ...]]]:
    async with engine.connect() as connection:
        result = await connection.execute(statement)
        description = result.cursor.description if result.cursor is not None else None
        return description, [tuple(row) for row in result]


async def test_rows_and_descriptions_match_aiomysqls_own_parsing(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert driver_metadata.install()  # aiomysql 0.3, as locked
    assert aiomysql_connection.MySQLResult._get_descriptions is not driver_metadata.LIBRARY_GET_DESCRIPTIONS
    statements = [WIDE, *SAME_NAME_OTHER_TYPE]
    cached_first = [await _read(engine, s) for s in statements]
    cached_again = [await _read(engine, s) for s in statements]
    monkeypatch.setattr(
        aiomysql_connection.MySQLResult, "_get_descriptions", driver_metadata.LIBRARY_GET_DESCRIPTIONS
    )
    library = [await _read(engine, s) for s in statements]

    assert cached_first == library
    assert cached_again == library
    assert library[1][1] == [(7,)] and library[2][1] == [("seven",)]
    assert library[0][1][0][2] == "h\u00e9llo"


async def test_asyncmy_reads_what_aiomysql_reads(engine: AsyncEngine, asyncmy_engine: AsyncEngine) -> None:
    statements = [WIDE, *SAME_NAME_OTHER_TYPE]
    aiomysql_reads = [await _read(engine, s) for s in statements]
    asyncmy_reads = [await _read(asyncmy_engine, s) for s in statements]

    assert [rows for _, rows in asyncmy_reads] == [rows for _, rows in aiomysql_reads]
    # name and type code of each column (the sizes are each driver's own reading of the packet)
    assert [[c[:2] for c in d] for d, _ in asyncmy_reads] == [[c[:2] for c in d] for d, _ in aiomysql_reads]
