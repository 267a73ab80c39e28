"""The outbox relay on real MariaDB + Redis Streams and on SQLite + the in-process bus."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select

from penpay import cli
from persistence.tables import domain_events
from tests.workers.conftest import (
    OCCURRED_AT,
    STREAM,
    Backend,
    event_row,
    insert_events,
    pending_rows,
    published_event_ids,
)
from workers.envelope import EventEnvelope
from workers.relay import OutboxRelay

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]


async def test_a_row_committed_late_is_still_published(mariadb_redis: Backend) -> None:
    engine, bus = mariadb_redis.engine, mariadb_redis.bus
    relay = OutboxRelay(engine, bus)
    early = event_row(occurred_at=OCCURRED_AT - timedelta(seconds=1))
    late = event_row()
    # The scenario that defeats "id > last seen": the early row has the smaller id and the
    # earlier occurred_at, but its transaction commits after the later row was relayed.
    assert early["id"].bytes < late["id"].bytes

    transaction_a = await engine.connect()
    await transaction_a.begin()
    await transaction_a.execute(insert(domain_events), [early])
    async with engine.begin() as transaction_b:
        await transaction_b.execute(insert(domain_events), [late])

    # SKIP LOCKED: the relay neither waits for A nor sees its row.
    assert await asyncio.wait_for(relay.relay_once(), 10) == 1
    assert await published_event_ids(bus) == [str(late["id"])]

    await transaction_a.commit()
    await transaction_a.close()
    assert await relay.relay_once() == 1
    assert await published_event_ids(bus) == [str(late["id"]), str(early["id"])]
    assert await pending_rows(engine) == 0


async def test_concurrent_relays_publish_every_event(backend: Backend) -> None:
    engine, bus = backend.engine, backend.bus
    rows = await insert_events(engine, 150)
    inserting = asyncio.Event()

    async def writer() -> None:
        for _ in range(10):  # new rows keep arriving while the relays run
            rows.extend(await insert_events(engine, 5))
            await asyncio.sleep(0.005)
        inserting.set()

    async def relay_loop(relay: OutboxRelay) -> int:
        total = 0
        while True:
            published = await relay.relay_once()
            total += published
            if published == 0:
                if inserting.is_set():
                    return total
                await asyncio.sleep(0.005)

    relays = [OutboxRelay(engine, bus, batch_size=7), OutboxRelay(engine, bus, batch_size=7)]
    _, first, second = await asyncio.wait_for(
        asyncio.gather(writer(), relay_loop(relays[0]), relay_loop(relays[1])), 40
    )

    published = await published_event_ids(bus)
    assert await pending_rows(engine) == 0
    assert set(published) == {str(r["id"]) for r in rows}  # none lost
    # Duplicates would be harmless (consumers dedupe by event id), but locked claims make
    # them a crash-only event: here every event is published exactly once.
    assert len(published) == len(rows)
    assert first + second == len(published)
    if backend.name == "mariadb-redis":
        assert first > 0 and second > 0  # both relays really took part


async def test_a_rolled_back_transaction_is_never_published(backend: Backend) -> None:
    engine, bus = backend.engine, backend.bus
    rolled_back = event_row()
    async with engine.connect() as connection:
        await connection.begin()
        await connection.execute(insert(domain_events), [rolled_back])
        await connection.rollback()
    (committed,) = await insert_events(engine)

    assert await OutboxRelay(engine, bus).drain() == 1
    assert await published_event_ids(bus) == [str(committed["id"])]


async def test_the_message_is_the_envelope_and_the_row_is_marked(backend: Backend) -> None:
    engine, bus = backend.engine, backend.bus
    (row,) = await insert_events(engine, stream="penpay.wallet", event_type="BalanceChanged")
    await OutboxRelay(engine, bus).drain()

    ((_, fields),) = await bus.read_all("penpay.wallet")
    envelope = EventEnvelope.from_fields(fields)
    assert envelope.event_id == row["id"]
    assert envelope.event_type == "BalanceChanged"
    assert envelope.aggregate_id == row["aggregate_id"]
    assert envelope.aggregate_version == 1
    assert envelope.payload == row["payload"]
    assert abs(envelope.occurred_at - row["occurred_at"]) < timedelta(milliseconds=1)
    assert await bus.read_all(STREAM) == []
    async with engine.connect() as connection:
        stored = (
            await connection.execute(select(domain_events).where(domain_events.c.id == row["id"]))
        ).one()
    assert stored.published_at is not None
    assert stored.publish_attempts == 1


class RefusingBus:
    """A bus that is down: publish fails."""

    async def publish(self, messages: Sequence[tuple[str, Mapping[str, str]]]) -> list[str]:
        raise ConnectionError("bus down")


async def test_a_refused_publish_keeps_the_rows_pending_and_counts_the_attempt(
    sqlite_memory: Backend,
) -> None:
    engine, bus = sqlite_memory.engine, sqlite_memory.bus
    (row,) = await insert_events(engine)
    with pytest.raises(ConnectionError):
        await OutboxRelay(engine, RefusingBus()).relay_once()  # type: ignore[arg-type]
    assert await pending_rows(engine) == 1

    await OutboxRelay(engine, bus).drain()
    async with engine.connect() as connection:
        stored = (
            await connection.execute(select(domain_events).where(domain_events.c.id == row["id"]))
        ).one()
    assert stored.publish_attempts == 2
    assert await published_event_ids(bus) == [str(row["id"])]


async def test_relay_loop_stops_when_told(sqlite_memory: Backend) -> None:
    stop = asyncio.Event()
    relay = OutboxRelay(sqlite_memory.engine, sqlite_memory.bus, poll_interval=0.05)
    task = asyncio.create_task(relay.run(stop))
    rows = await insert_events(sqlite_memory.engine, 3)
    for _ in range(100):
        if len(await published_event_ids(sqlite_memory.bus)) == 3:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert await published_event_ids(sqlite_memory.bus) == [str(r["id"]) for r in rows]


async def test_penpay_relay_once_command(mariadb_redis: Backend) -> None:
    rows = await insert_events(mariadb_redis.engine, 3)
    argv = [
        "relay",
        "--once",
        "--database-url",
        mariadb_redis.database_url,
        "--redis-url",
        str(mariadb_redis.redis_url),
        "--stream-prefix",
        mariadb_redis.prefix,
    ]
    assert await asyncio.to_thread(cli.main, argv) == 0
    assert await published_event_ids(mariadb_redis.bus) == [str(r["id"]) for r in rows]


def test_penpay_relay_refuses_to_run_without_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    from penpay.settings import get_settings

    monkeypatch.delenv("PENPAY_REDIS_URL", raising=False)
    get_settings.cache_clear()
    try:
        assert cli.main(["relay", "--database-url", "sqlite+aiosqlite:///:memory:"]) == 2
    finally:
        get_settings.cache_clear()


async def test_penpay_relay_process_publishes_and_stops_on_sigterm(mariadb_redis: Backend) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "penpay",
        "relay",
        "--database-url",
        mariadb_redis.database_url,
        "--redis-url",
        str(mariadb_redis.redis_url),
        "--stream-prefix",
        mariadb_redis.prefix,
        "--poll-interval",
        "0.05",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        (row,) = await insert_events(mariadb_redis.engine)
        for _ in range(200):
            if await published_event_ids(mariadb_redis.bus):
                break
            await asyncio.sleep(0.05)
        assert await published_event_ids(mariadb_redis.bus) == [str(row["id"])]
        process.terminate()
        output, _ = await asyncio.wait_for(process.communicate(), 10)
        assert process.returncode == 0, output.decode()
        assert b"payload-must-not-be-logged" not in output
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_the_relay_loop_keeps_one_connection_and_commits_only_what_it_claimed(
    mariadb_redis: Backend,
) -> None:
    """Idle passes on MariaDB are the claim alone: no checkout (and isolation switch) per pass, no
    empty COMMIT; a pass that claims rows commits them as before."""
    from sqlalchemy import event

    engine = mariadb_redis.engine
    counts = {"checkouts": 0, "commits": 0, "claims": 0}

    def on_checkout(*_: object) -> None:
        counts["checkouts"] += 1

    def on_commit(*_: object) -> None:
        counts["commits"] += 1

    def on_execute(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "SKIP LOCKED" in statement:
            counts["claims"] += 1

    event.listen(engine.sync_engine.pool, "checkout", on_checkout)
    event.listen(engine.sync_engine, "commit", on_commit)
    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    stop = asyncio.Event()
    task = asyncio.create_task(OutboxRelay(engine, mariadb_redis.bus, poll_interval=0.01).run(stop))
    try:
        while counts["claims"] < 5:  # five idle passes
            await asyncio.sleep(0.01)
        assert counts == {"checkouts": 1, "commits": 0, "claims": counts["claims"]}
        rows = await insert_events(engine, 2)  # its own connection: one checkout, one commit
        while len(await published_event_ids(mariadb_redis.bus)) < 2:
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert await published_event_ids(mariadb_redis.bus) == [str(r["id"]) for r in rows]
    assert await pending_rows(engine) == 0
    assert counts["commits"] == 2  # the insert's, and the relay's pass that published the rows
