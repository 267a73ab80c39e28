"""Alembic, driven from code (the `penpay migrate` command and the tests)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TextIO

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from persistence.engine import create_engine

ROOT = Path(__file__).resolve().parents[1]
# Where a wheel carries alembic.ini and migrations/ (setup.py's build hook puts them there).
PACKAGED = Path(__file__).resolve().parent / "_migrations"


def alembic_home() -> Path:
    """The directory holding alembic.ini and migrations/: the installed copy, else the checkout."""
    return PACKAGED if (PACKAGED / "alembic.ini").is_file() else ROOT


def alembic_config(database_url: str) -> Config:
    home = alembic_home()
    config = Config(str(home / "alembic.ini"))
    config.set_main_option("script_location", str(home / "migrations"))
    # The code is installed; a `persistence/` in the working directory must not shadow it.
    config.set_main_option("prepend_sys_path", "")
    # '%' is ConfigParser's interpolation character; URLs may contain it.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def upgrade_sql(database_url: str, revision: str = "head", output: TextIO | None = None) -> None:
    """Offline mode: the SQL of `upgrade base:revision` for a DBA, written to `output`; nothing runs.

    For a new, empty database (data steps assume no rows yet, see migrations/versions/0004)."""
    config = alembic_config(database_url)
    if output is not None:
        config.output_buffer = output
    command.upgrade(config, revision, sql=True)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str, revision: str = "head") -> None:
    """upgrade() from inside an event loop: Alembic's env runs its own loop, so use a thread."""
    await asyncio.to_thread(upgrade, database_url, revision)


async def downgrade_async(database_url: str, revision: str = "base") -> None:
    await asyncio.to_thread(downgrade, database_url, revision)


def head_revision(database_url: str) -> str | None:
    return ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()


async def current_revision(database_url: str) -> str | None:
    engine = create_engine(database_url)

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    try:
        async with engine.connect() as connection:
            return await connection.run_sync(read)
    finally:
        await engine.dispose()


async def schema_problem(database_url: str) -> str | None:
    """Why PenPay cannot use this database as it is (None: it is at head). Reads only: a missing
    SQLite file is not created, a missing MariaDB database is not made."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not await asyncio.to_thread(Path(str(url.database)).exists):
            return "the database does not exist"
    try:
        current = await current_revision(database_url)
    except DBAPIError as error:
        code = error.orig.args[0] if error.orig is not None and error.orig.args else None
        if code == 1049:  # MySQL/MariaDB ER_BAD_DB_ERROR: "Unknown database"
            return "the database does not exist"
        raise
    if current is None:
        return "the database has no PenPay schema"
    head = head_revision(database_url)
    if current != head:
        return f"the database is at schema revision {current}, not {head}"
    return None
