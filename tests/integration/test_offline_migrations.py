"""`alembic upgrade head --sql` (and `penpay migrate --sql`): the offline SQL a DBA applies with the
mysql client builds the same schema, triggers and revision as the online migration."""

from __future__ import annotations

import io
import shutil
import subprocess

import pytest
from sqlalchemy import Connection, text

from persistence import migrate
from tests import databases
from tests.integration.test_migrations import _inspect, _schema_diff

pytestmark = pytest.mark.integration


def _triggers(connection: Connection) -> set[tuple[str, str]]:
    rows = connection.execute(
        text(
            "SELECT trigger_name, action_statement FROM information_schema.triggers "
            "WHERE trigger_schema = DATABASE()"
        )
    )
    return {(row[0], row[1]) for row in rows}


async def test_offline_sql_through_the_mysql_client_builds_what_the_online_migration_builds() -> None:
    client = shutil.which("mariadb") or shutil.which("mysql")
    assert client, "the mysql client is installed by scripts/services.sh"
    online_name, online_url = databases.create_mysql_database(migrated=False)
    offline_name, offline_url = databases.create_mysql_database(migrated=False)
    try:
        await migrate.upgrade_async(online_url)
        sql = io.StringIO()
        migrate.upgrade_sql(offline_url, output=sql)
        assert "DELIMITER //" in sql.getvalue()  # 0008's compound trigger body
        subprocess.run(
            [client, "-h", databases.MYSQL_HOST, "-P", str(databases.MYSQL_PORT), "-u", databases.MYSQL_USER,
             f"-p{databases.MYSQL_PASSWORD}", offline_name],
            input=sql.getvalue().encode(), check=True, capture_output=True,
        )  # fmt: skip
        assert await migrate.current_revision(offline_url) == migrate.head_revision(offline_url)
        assert await _inspect(offline_url, _schema_diff) == []
        offline_triggers = await _inspect(offline_url, _triggers)
        assert len(offline_triggers) == 7  # 0004 (four), 0008 (two), 0028 (one)
        assert offline_triggers == await _inspect(online_url, _triggers)
    finally:
        databases.drop_mysql_database(online_name)
        databases.drop_mysql_database(offline_name)
