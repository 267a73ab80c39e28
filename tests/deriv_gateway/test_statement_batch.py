"""StatementBatcher's rules, with a scan function standing in for the statement read (no sockets)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from deriv_gateway.protocol import errors
from deriv_gateway.protocol.messages import StatementMatch
from deriv_gateway.statement_batch import StatementBatcher

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def line(txn: int) -> StatementMatch:
    return StatementMatch(transaction_id=txn, amount_cents=100, longcode="", transaction_time=None)


class Statement:
    """The lines it holds, each scan recorded; a scan waits until the test lets it finish."""

    def __init__(self) -> None:
        self.lines: dict[str, StatementMatch] = {}
        self.scans: list[tuple[set[str], datetime]] = []
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def scan(self, wanted: set[str], since: datetime) -> dict[str, StatementMatch]:
        self.scans.append((set(wanted), since))
        snapshot = dict(self.lines)  # what the statement holds when the read begins
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return {ref: snapshot[ref] for ref in wanted if ref in snapshot}


async def ready() -> None:
    return None


async def test_lookups_waiting_together_share_one_read_from_the_earliest_since() -> None:
    statement = Statement()
    statement.lines = {"PenPay a": line(1), "PenPay b": line(2)}
    batcher = StatementBatcher(statement.scan, ready)
    lookups = [
        asyncio.ensure_future(batcher.find(ref, T0 + timedelta(seconds=i)))
        for i, ref in enumerate(["PenPay a", "PenPay b", "PenPay c"])
    ]
    await asyncio.sleep(0)
    statement.release.set()
    found = await asyncio.gather(*lookups)
    assert [m.transaction_id if m else None for m in found] == [1, 2, None]
    assert statement.scans == [({"PenPay a", "PenPay b", "PenPay c"}, T0)] and batcher.reads == 1


async def test_a_lookup_never_joins_a_read_already_running() -> None:
    # the running read began before the operation executed: its "absent" would prove nothing
    statement = Statement()
    batcher = StatementBatcher(statement.scan, ready)
    first = asyncio.ensure_future(batcher.find("PenPay a", T0))
    while not statement.scans:
        await asyncio.sleep(0)
    statement.lines["PenPay late"] = line(7)  # executed after the first read began
    late = asyncio.ensure_future(batcher.find("PenPay late", T0))
    statement.release.set()
    assert await first is None
    match = await late
    assert match is not None and match.transaction_id == 7  # from a read of its own, begun after it
    assert [wanted for wanted, _ in statement.scans] == [{"PenPay a"}, {"PenPay late"}]


async def test_a_failed_read_fails_its_batch_and_the_next_lookup_reads_again() -> None:
    statement = Statement()
    statement.fail = errors.RateLimit("statement rate limit")
    batcher = StatementBatcher(statement.scan, ready)
    statement.release.set()
    results = await asyncio.gather(
        batcher.find("PenPay a", T0), batcher.find("PenPay b", T0), return_exceptions=True
    )
    assert all(isinstance(r, errors.RateLimit) for r in results) and batcher.reads == 1
    statement.fail = None
    statement.lines["PenPay a"] = line(3)
    match = await batcher.find("PenPay a", T0)
    assert match is not None and batcher.reads == 2
