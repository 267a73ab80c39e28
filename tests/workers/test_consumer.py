"""The consumer runtime: inbox (effectively once), claims of a dead consumer's messages,
dead letters with their metric, and replay; on MariaDB + Redis and SQLite + in-process bus.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from redis import asyncio as aioredis
from sqlalchemy import func, select

from domain.shared.clock import FixedClock
from domain.shared.ids import new_uuid7
from penpay import cli
from persistence.tables import processed_events
from persistence.unit_of_work import SqlUnitOfWork
from tests.workers.conftest import STREAM, Backend, audit_count, insert_events
from workers.bus import MessageBus
from workers.consumer import EventConsumer, KeepAndRetry, Outcome
from workers.envelope import EventEnvelope
from workers.memory_bus import InProcessBus
from workers.relay import OutboxRelay

pytestmark = pytest.mark.integration


class ConsumerCrashed(BaseException):
    """The process dies: nothing after this point runs."""


class CrashBeforeAck:
    """The real bus, except that the consumer dies when it is about to acknowledge."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)

    async def ack(self, stream: str, group: str, *message_ids: str) -> None:
        raise ConsumerCrashed


class CountingBus:
    """The real bus, counting the round trips the consumer spends on acks and claims."""

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self.acks: list[tuple[str, ...]] = []
        self.claims = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bus, name)

    async def ack(self, stream: str, group: str, *message_ids: str) -> None:
        self.acks.append(message_ids)
        await self._bus.ack(stream, group, *message_ids)

    async def claim_stale(self, *args: Any, **kwargs: Any) -> Any:
        self.claims += 1
        return await self._bus.claim_stale(*args, **kwargs)


class AuditingHandler:
    """A real table effect: one audit row per handled event, through the unit of work."""

    def __init__(self) -> None:
        self.calls = 0
        self.broken = False

    async def __call__(self, event: EventEnvelope, uow: SqlUnitOfWork) -> None:
        self.calls += 1
        uow.audit(action="test.handled", subject_type="test_event", subject_id=str(event.event_id))
        if self.broken:
            raise RuntimeError("boom: the handler is broken")


def group_name() -> str:
    return f"test-{secrets.token_hex(4)}"


def consumer(backend: Backend, group: str, handler: AuditingHandler, **kwargs: Any) -> EventConsumer:
    options: dict[str, Any] = {"block_ms": 0, "claim_idle_ms": 60_000, "max_deliveries": 3}
    options.update(kwargs)
    bus = options.pop("bus", backend.bus)
    runtime = EventConsumer(bus, backend.engine, group=group, streams=[STREAM], **options)
    runtime.register("TestHappened", handler)
    return runtime


async def inbox_rows(backend: Backend, group: str) -> int:
    async with backend.engine.connect() as connection:
        statement = select(func.count()).where(processed_events.c.consumer == group)
        return int((await connection.execute(statement)).scalar_one())


def statuses(outcomes: list[Outcome]) -> list[str]:
    return [o.status for o in outcomes]


async def test_each_event_is_handled_once_and_acked(backend: Backend) -> None:
    group, handler = group_name(), AuditingHandler()
    runtime = consumer(backend, group, handler)
    await runtime.start()
    rows = await insert_events(backend.engine, 3)
    await insert_events(backend.engine, event_type="SomethingElse")
    await OutboxRelay(backend.engine, backend.bus).drain()

    assert statuses(await runtime.process_once()) == ["handled", "handled", "handled", "ignored"]
    assert [await audit_count(backend.engine, str(r["id"])) for r in rows] == [1, 1, 1]
    assert await inbox_rows(backend, group) == 3
    assert await backend.bus.pending_count(STREAM, group) == 0
    assert await runtime.process_once() == []


async def test_a_batch_is_acknowledged_in_one_round_trip_and_claims_wait_for_idle_time(
    backend: Backend,
) -> None:
    group, handler = group_name(), AuditingHandler()
    counting = CountingBus(backend.bus)
    runtime = consumer(backend, group, handler, bus=counting)
    await runtime.start()
    await insert_events(backend.engine, 3)
    await insert_events(backend.engine, event_type="SomethingElse")
    await OutboxRelay(backend.engine, backend.bus).drain()

    assert statuses(await runtime.process_once()) == ["handled", "handled", "handled", "ignored"]
    assert [len(ids) for ids in counting.acks] == [4]  # handled and ignored alike, after the commits
    assert await backend.bus.pending_count(STREAM, group) == 0
    assert await runtime.process_once() == []
    # Nothing can be claimable before claim_idle_ms (60 s here): the second pass did not look.
    assert counting.claims == 1


async def test_a_group_the_bus_lost_is_made_again_and_reading_goes_on(mariadb_redis: Backend) -> None:
    """A Redis restarted without persistence has lost the streams and their groups: the consumer
    makes its group again instead of failing every pass until its process restarts (found by the
    full soak: the audit daemon's FloatLow consumer failed for good after a Redis restart)."""
    backend = mariadb_redis
    group, handler = group_name(), AuditingHandler()
    runtime = consumer(backend, group, handler)
    await runtime.start()
    assert backend.redis_url is not None
    raw = aioredis.from_url(backend.redis_url)
    try:
        assert await raw.delete(f"{backend.prefix}{STREAM}") == 1  # what the restart did
    finally:
        await raw.aclose()
    await insert_events(backend.engine, 2)
    await OutboxRelay(backend.engine, backend.bus).drain()  # XADD makes the stream, not the group

    assert statuses(await runtime.process_once()) == ["handled", "handled"]
    assert await backend.bus.pending_count(STREAM, group) == 0


async def test_a_crash_after_commit_before_ack_is_redelivered_and_is_a_no_op(backend: Backend) -> None:
    group, handler = group_name(), AuditingHandler()
    dying = consumer(backend, group, handler, bus=CrashBeforeAck(backend.bus), consumer="dying")
    survivor = consumer(backend, group, handler, consumer="survivor", claim_idle_ms=20)
    await dying.start()
    (row,) = await insert_events(backend.engine)
    await OutboxRelay(backend.engine, backend.bus).drain()

    with pytest.raises(ConsumerCrashed):
        await dying.process_once()
    assert await audit_count(backend.engine, str(row["id"])) == 1  # the effect committed
    assert await backend.bus.pending_count(STREAM, group) == 1  # but the message was never acked

    await asyncio.sleep(0.05)  # the dying consumer's message goes idle past the threshold
    (outcome,) = await survivor.process_once()  # XAUTOCLAIM hands it to the survivor

    assert outcome.status == "duplicate"
    assert outcome.event_id == str(row["id"])
    assert handler.calls == 1  # the handler did not run again
    assert await audit_count(backend.engine, str(row["id"])) == 1  # effect happened once
    assert await backend.bus.pending_count(STREAM, group) == 0


async def test_a_failing_handler_is_retried_then_dead_lettered_counted_and_replayed(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    group, handler = group_name(), AuditingHandler()
    handler.broken = True
    runtime = consumer(backend, group, handler, claim_idle_ms=10, max_deliveries=3)
    await runtime.start()
    (row,) = await insert_events(backend.engine)
    await OutboxRelay(backend.engine, backend.bus).drain()

    seen: list[str] = []
    for _ in range(50):
        seen += statuses(await runtime.process_once())
        if "dead" in seen:
            break
        await asyncio.sleep(0.02)
    assert seen == ["retry", "retry", "dead"]
    assert handler.calls == 3
    assert await audit_count(backend.engine, str(row["id"])) == 0  # every attempt rolled back
    assert await backend.bus.pending_count(STREAM, group) == 0  # acked from the original stream
    assert REGISTRY.get_sample_value("penpay_dead_letters_total", {"stream": STREAM, "group": group}) == 1

    (letter,) = await backend.bus.list_dead(STREAM)
    assert letter.group == group
    assert letter.deliveries == 3
    assert letter.error == "RuntimeError: boom: the handler is broken"
    assert letter.fields["event_id"] == str(row["id"])
    assert await backend.bus.dead_letter_streams() == [STREAM]

    handler.broken = False  # the handler is fixed; replay the dead letter
    if backend.name == "mariadb-redis":
        common = ["--redis-url", str(backend.redis_url), "--stream-prefix", backend.prefix]
        assert await asyncio.to_thread(cli.main, ["dead-letters", "list", *common]) == 0
        listed = capsys.readouterr().out
        assert letter.dead_id in listed and str(row["id"]) in listed and "boom" in listed
        assert "payload-must-not-be-logged" not in listed
        replay = ["dead-letters", "replay", "--stream", STREAM, "--id", letter.dead_id, *common]
        assert await asyncio.to_thread(cli.main, replay) == 0
    else:
        assert await backend.bus.replay_dead(STREAM, letter.dead_id) is not None
    assert await backend.bus.list_dead(STREAM) == []

    assert statuses(await runtime.process_once()) == ["handled"]
    assert await audit_count(backend.engine, str(row["id"])) == 1
    assert await runtime.process_once() == []
    assert await backend.bus.pending_count(STREAM, group) == 0
    assert REGISTRY.get_sample_value("penpay_dead_letters_total", {"stream": STREAM, "group": group}) == 1


async def test_a_message_whose_consumers_keep_dying_is_dead_lettered(backend: Backend) -> None:
    group, handler = group_name(), AuditingHandler()
    handler.broken = True
    runtime = consumer(backend, group, handler, claim_idle_ms=10, max_deliveries=1)
    await runtime.start()
    (row,) = await insert_events(backend.engine)
    await OutboxRelay(backend.engine, backend.bus).drain()
    # Delivered once, never acked (the consumer died): the claim is delivery 2 > 1.
    await backend.bus.read([STREAM], group, "died", count=10, block_ms=0)
    await asyncio.sleep(0.03)

    assert statuses(await runtime.process_once()) == ["dead"]
    assert handler.calls == 0
    (letter,) = await backend.bus.list_dead(STREAM)
    assert letter.fields["event_id"] == str(row["id"])
    assert "without an acknowledgement" in letter.error


async def test_every_group_sees_every_event_and_a_replay_is_skipped_by_groups_that_had_it(
    backend: Backend,
) -> None:
    fine, broken = AuditingHandler(), AuditingHandler()
    broken.broken = True
    group_a, group_b = group_name(), group_name()
    runtime_a = consumer(backend, group_a, fine)
    runtime_b = consumer(backend, group_b, broken, max_deliveries=1)
    await runtime_a.start()
    await runtime_b.start()
    (row,) = await insert_events(backend.engine)
    await OutboxRelay(backend.engine, backend.bus).drain()

    assert statuses(await runtime_a.process_once()) == ["handled"]
    assert statuses(await runtime_b.process_once()) == ["dead"]
    (letter,) = await backend.bus.list_dead(STREAM)
    await backend.bus.replay_dead(STREAM, letter.dead_id)
    broken.broken = False

    assert statuses(await runtime_a.process_once()) == ["duplicate"]
    assert statuses(await runtime_b.process_once()) == ["handled"]
    assert await audit_count(backend.engine, str(row["id"])) == 2  # one per group
    assert fine.calls == 1


async def test_consumer_and_relay_run_together_until_stopped(sqlite_memory: Backend) -> None:
    group, handler = group_name(), AuditingHandler()
    runtime = consumer(sqlite_memory, group, handler, block_ms=50)
    rows = await run_with_relay_until_handled(sqlite_memory, runtime, group, 5)
    assert [await audit_count(sqlite_memory.engine, str(r["id"])) for r in rows] == [1] * 5


async def run_with_relay_until_handled(
    backend: Backend, runtime: EventConsumer, group: str, count: int
) -> list[dict[str, Any]]:
    """`count` new events, the relay and `runtime` running until the group's inbox holds them all
    (or a few seconds passed), then stopped; the events' rows."""
    from workers.host import run_workers

    relay = OutboxRelay(backend.engine, backend.bus, poll_interval=0.02)
    stop = asyncio.Event()
    task = asyncio.create_task(run_workers(stop, relay=relay, consumers=[runtime]))
    rows = await insert_events(backend.engine, count)
    for _ in range(200):
        if await inbox_rows(backend, group) == count:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)
    return rows


class BatchAuditor:
    """A batch handler: one audit row per event it handles, one call per batch. Events named in
    `failing` fail having written nothing; those in `partly` write their row, then KeepAndRetry."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.failing: set[str] = set()
        self.partly: set[str] = set()

    async def __call__(
        self, events: Sequence[EventEnvelope], uow: SqlUnitOfWork
    ) -> dict[uuid.UUID, Exception]:
        self.batches.append([str(event.event_id) for event in events])
        failed: dict[uuid.UUID, Exception] = {}
        for event in events:
            if str(event.event_id) in self.failing:
                failed[event.event_id] = RuntimeError("boom: nothing written")
                continue
            uow.audit(action="test.handled", subject_type="test_event", subject_id=str(event.event_id))
            if str(event.event_id) in self.partly:
                failed[event.event_id] = KeepAndRetry(RuntimeError("half done"))
        return failed


def batch_consumer(backend: Backend, group: str, handler: BatchAuditor, **kwargs: Any) -> EventConsumer:
    options: dict[str, Any] = {"block_ms": 0, "claim_idle_ms": 0, "max_deliveries": 3, **kwargs}
    runtime = EventConsumer(backend.bus, backend.engine, group=group, streams=[STREAM], **options)
    runtime.register_batch("TestHappened", handler)
    return runtime


async def test_a_batch_handler_takes_one_reads_events_in_one_unit_of_work(backend: Backend) -> None:
    """One call with every new event of the read, one commit: the failed event's inbox row is taken
    back (it wrote nothing), the half-done one's work stands without its row, and only those two
    come back, together."""
    group, handler = group_name(), BatchAuditor()
    runtime = batch_consumer(backend, group, handler)
    await runtime.start()
    ids = [str(row["id"]) for row in await insert_events(backend.engine, 4)]
    await insert_events(backend.engine, event_type="SomethingElse")
    handler.failing, handler.partly = {ids[1]}, {ids[2]}
    await OutboxRelay(backend.engine, backend.bus).drain()

    outcomes = await runtime.process_once()

    assert sorted(statuses(outcomes)) == ["handled", "handled", "ignored", "retry", "retry"]
    assert handler.batches == [ids]  # one call, in the stream's order
    assert [await audit_count(backend.engine, i) for i in ids] == [1, 0, 1, 1]
    assert await inbox_rows(backend, group) == 2

    handler.failing, handler.partly = set(), set()
    again = await runtime.process_once()  # claimed back at once (claim_idle_ms 0)

    assert sorted(statuses(again)) == ["handled", "handled"]
    assert handler.batches[1] == [ids[1], ids[2]]
    assert [await audit_count(backend.engine, i) for i in ids] == [1, 1, 2, 1]  # the half-done: once more
    assert await inbox_rows(backend, group) == 4
    assert await backend.bus.pending_count(STREAM, group) == 0


async def test_a_batch_redelivered_after_its_commit_hands_the_handler_nothing(backend: Backend) -> None:
    group, handler = group_name(), BatchAuditor()
    crashing = EventConsumer(
        CrashBeforeAck(backend.bus),
        backend.engine,
        group=group,
        streams=[STREAM],
        block_ms=0,
        claim_idle_ms=0,
    )
    crashing.register_batch("TestHappened", handler)
    await crashing.start()
    ids = [str(row["id"]) for row in await insert_events(backend.engine, 3)]
    await OutboxRelay(backend.engine, backend.bus).drain()
    with pytest.raises(ConsumerCrashed):
        await crashing.process_once()  # committed, then died before its acknowledgement

    outcomes = await batch_consumer(backend, group, handler).process_once()

    assert statuses(outcomes) == ["duplicate"] * 3
    assert handler.batches == [ids]  # not called again: nothing new in the batch
    assert [await audit_count(backend.engine, i) for i in ids] == [1, 1, 1]


async def test_a_running_batch_consumer_lingers_and_handles_everything(sqlite_memory: Backend) -> None:
    group, handler = group_name(), BatchAuditor()
    runtime = batch_consumer(sqlite_memory, group, handler, block_ms=50, linger_ms=50)
    rows = await run_with_relay_until_handled(sqlite_memory, runtime, group, 5)
    assert [await audit_count(sqlite_memory.engine, str(r["id"])) for r in rows] == [1] * 5
    assert sorted(i for batch in handler.batches for i in batch) == sorted(str(r["id"]) for r in rows)


async def test_a_wake_up_handler_runs_without_inbox_rows_and_a_repeat_just_looks_again(
    backend: Backend,
) -> None:
    group, looks = group_name(), []
    runtime = EventConsumer(backend.bus, backend.engine, group=group, streams=[STREAM], block_ms=0)

    async def look_again(event: EventEnvelope) -> None:
        looks.append(str(event.event_id))

    runtime.register_standalone("TestHappened", look_again, inbox=False)
    await runtime.start()
    (row,) = await insert_events(backend.engine)
    await OutboxRelay(backend.engine, backend.bus).drain()

    assert statuses(await runtime.process_once()) == ["handled"]
    assert await inbox_rows(backend, group) == 0  # no inbox read or write for a look
    assert await backend.bus.pending_count(STREAM, group) == 0
    assert looks == [str(row["id"])]


async def test_a_slow_handler_holds_up_only_its_own_aggregate(backend: Backend) -> None:
    """run() reads on while a handler runs: a message of another aggregate, published after the
    slow one started, is handled while it still runs (reading a batch and waiting for all of it
    held every message behind its slowest handler); a later message of the slow one's aggregate
    waits for it, in order. Stopping finishes what runs and acknowledges it."""
    group, handled = group_name(), list[str]()
    slow_started, release, fast_done = asyncio.Event(), asyncio.Event(), asyncio.Event()
    runtime = EventConsumer(backend.bus, backend.engine, group=group, streams=[STREAM], block_ms=20)
    slow = str(new_uuid7())

    async def handle(event: EventEnvelope) -> None:
        if event.aggregate_id == slow and not handled:
            slow_started.set()
            await release.wait()
        handled.append(str(event.event_id))
        if event.aggregate_id != slow:
            fast_done.set()

    runtime.register_standalone("TestHappened", handle, inbox=False)
    await runtime.start()
    (first,) = await insert_events(backend.engine, aggregate_id=slow)
    await OutboxRelay(backend.engine, backend.bus).drain()
    stop = asyncio.Event()
    running = asyncio.create_task(runtime.run(stop))
    try:
        await asyncio.wait_for(slow_started.wait(), 10)
        (other,) = await insert_events(backend.engine)
        (second,) = await insert_events(backend.engine, aggregate_id=slow)
        await OutboxRelay(backend.engine, backend.bus).drain()
        await asyncio.wait_for(fast_done.wait(), 10)  # while the slow one still runs
        assert handled == [str(other["id"])]
        release.set()
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(running, 10)
    assert handled == [str(other["id"]), str(first["id"]), str(second["id"])]
    assert await backend.bus.pending_count(STREAM, group) == 0


async def test_the_queue_delay_is_how_long_the_oldest_message_being_handled_waited(
    sqlite_memory: Backend,
) -> None:
    clock = FixedClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))
    bus = InProcessBus(clock=clock)  # stamps its ids with this clock, as Redis with its own
    group, started, release = group_name(), asyncio.Event(), asyncio.Event()
    engine = sqlite_memory.engine
    runtime = EventConsumer(bus, engine, group=group, streams=[STREAM], block_ms=20, clock=clock)

    async def handle(event: EventEnvelope) -> None:
        started.set()
        await release.wait()

    runtime.register_standalone("TestHappened", handle, inbox=False)
    await runtime.start()
    assert runtime.queue_delay() == timedelta(0)  # nothing handled
    await insert_events(sqlite_memory.engine)
    await OutboxRelay(sqlite_memory.engine, bus).drain()  # written at 9:00:00
    stop = asyncio.Event()
    running = asyncio.create_task(runtime.run(stop))
    try:
        await asyncio.wait_for(started.wait(), 10)
        clock.advance(timedelta(seconds=3))
        assert runtime.queue_delay() == timedelta(seconds=3)
    finally:
        release.set()
        stop.set()
        await asyncio.wait_for(running, 10)
    assert runtime.queue_delay() == timedelta(0)
