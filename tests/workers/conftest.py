"""Fixtures of the relay/bus tests: a database engine and a bus, on the two real pairings.

"mariadb-redis": a fresh MariaDB database and Redis Streams under the test's key prefix.
"sqlite-memory": a fresh SQLite file and the in-process bus (the embedded default).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from domain.shared.ids import new_uuid7
from persistence.engine import create_engine
from persistence.tables import audit_logs, domain_events
from workers.bus import MessageBus
from workers.memory_bus import InProcessBus
from workers.redis_bus import RedisStreamsBus

STREAM = "penpay.payments"
OCCURRED_AT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)  # the relay orders by id, not by this stamp


@dataclass
class Backend:
    name: str
    engine: AsyncEngine
    bus: MessageBus
    redis_url: str | None = None
    prefix: str = ""
    database_url: str = ""


@pytest.fixture
async def mariadb_redis(
    fresh_mariadb_url: str, redis_url: str, key_prefix: str, redis_client: object
) -> AsyncIterator[Backend]:
    engine = create_engine(fresh_mariadb_url, pool_size=8)
    bus = RedisStreamsBus.from_url(redis_url, prefix=key_prefix)
    yield Backend("mariadb-redis", engine, bus, redis_url, key_prefix, fresh_mariadb_url)
    await bus.close()
    await engine.dispose()
    # redis_client (requested above) deletes every key under key_prefix afterwards


@pytest.fixture
async def sqlite_memory(sqlite_url: str) -> AsyncIterator[Backend]:
    engine = create_engine(sqlite_url)
    yield Backend("sqlite-memory", engine, InProcessBus(), database_url=sqlite_url)
    await engine.dispose()


@pytest.fixture(params=["mariadb-redis", "sqlite-memory"])
def backend(request: pytest.FixtureRequest) -> Backend:
    fixture = "mariadb_redis" if request.param == "mariadb-redis" else "sqlite_memory"
    return request.getfixturevalue(fixture)  # type: ignore[no-any-return]


def event_row(
    *,
    stream: str = STREAM,
    event_type: str = "TestHappened",
    occurred_at: datetime | None = None,
    aggregate_id: str | None = None,
) -> dict[str, Any]:
    event_id = new_uuid7()
    return {
        "id": event_id,
        "stream": stream,
        "aggregate_type": "Transaction",
        "aggregate_id": aggregate_id or str(new_uuid7()),
        "aggregate_version": 1,
        "event_type": event_type,
        "payload": json.dumps({"note": "payload-must-not-be-logged"}),
        "occurred_at": occurred_at or OCCURRED_AT,
        "published_at": None,
        "publish_attempts": 0,
        "actor": "test",
    }


async def insert_events(engine: AsyncEngine, count: int = 1, **kwargs: Any) -> list[dict[str, Any]]:
    rows = [event_row(**kwargs) for _ in range(count)]
    async with engine.begin() as connection:
        await connection.execute(insert(domain_events), rows)
    return rows


async def published_event_ids(bus: MessageBus, stream: str = STREAM) -> list[str]:
    return [fields["event_id"] for _, fields in await bus.read_all(stream)]


async def pending_rows(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        statement = select(func.count()).where(domain_events.c.published_at.is_(None))
        return int((await connection.execute(statement)).scalar_one())


async def audit_count(engine: AsyncEngine, subject_id: str) -> int:
    async with engine.connect() as connection:
        statement = select(func.count()).where(audit_logs.c.subject_id == subject_id)
        return int((await connection.execute(statement)).scalar_one())
