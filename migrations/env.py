"""Alembic environment: async engines for MariaDB (asyncmy or aiomysql) and SQLite (aiosqlite)."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from persistence.engine import create_engine
from persistence.schema_compare import compare_type
from persistence.server_check import require_supported
from persistence.tables import metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from penpay.settings import get_settings

    return get_settings().database_url


def configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=compare_type,
        # SQLite cannot ALTER most things: batch mode recreates tables there.
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_with_connection(connection: Connection) -> None:
    dialect = connection.dialect
    # Before anything changes: a server the code cannot run on is refused, named (server_check.py)
    mariadb = bool(getattr(dialect, "is_mariadb", False))
    require_supported(dialect.name, is_mariadb=mariadb, version=dialect.server_version_info)
    configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_async() -> None:
    engine = create_engine(database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_with_connection)
            await connection.commit()
    finally:
        await engine.dispose()


def run_offline() -> None:
    context.configure(url=database_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    existing = config.attributes.get("connection")
    if existing is not None:
        run_with_connection(existing)
    else:
        asyncio.run(run_async())
