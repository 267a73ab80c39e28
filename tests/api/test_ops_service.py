"""penpay.ops.v1.OpsService with an operator token: reports from the real database, dead
letters on real Redis Streams, the consistency check."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from sqlalchemy import insert

from domain.shared.ids import LedgerEntryId, UserId
from domain.wallet.money import Currency
from penpay.ops.v1 import ops_pb2
from persistence.outbox_reader import claim_pending, mark_published
from persistence.tables import ledger_entries, ledger_postings
from persistence.unit_of_work import SqlUnitOfWork
from tests.integration.payments_helpers import deposit_key, new_deposit
from workers.bus import Delivery
from workers.redis_bus import RedisStreamsBus

from .conftest import Harness, StartApi, details_of
from .ledger import move

pytestmark = pytest.mark.integration


@pytest.fixture
async def bus(redis_url: str, key_prefix: str, redis_client: object) -> AsyncIterator[RedisStreamsBus]:
    """Real Redis Streams under this test's own key prefix (removed afterwards by redis_client)."""
    bus = RedisStreamsBus.from_url(redis_url, prefix=key_prefix)
    yield bus
    await bus.close()


async def test_reconciliation_report(api: Harness) -> None:
    alice, bob = await api.new_account(), await api.new_account()
    await move(api, alice.user_id, 1_000_00)
    await move(api, bob.user_id, 500_00)
    await move(api, bob.user_id, 200_00, out=True)
    await move(api, alice.user_id, 7_00, currency=Currency.USD)
    async with SqlUnitOfWork(api.core.engine, clock=api.clock) as uow:
        user_id = UserId.from_str(alice.user_id)
        stuck = new_deposit(user_id, deposit_key(user_id, "ops-1"), shillings=1_500, now=api.clock.now())
        stuck.mark_outcome_unknown("STK push timed out", now=api.clock.now())
        await uow.transactions.add(stuck)
        await uow.transactions.add(
            new_deposit(user_id, deposit_key(user_id, "ops-2"), shillings=250, now=api.clock.now())
        )
        await uow.commit()

    report = await api.ops.GetReconciliationReport(
        ops_pb2.GetReconciliationReportRequest(), metadata=api.operator_auth()
    )
    totals = {
        (t.kind, t.balance.currency): (t.balance.amount_cents, t.account_count) for t in report.account_totals
    }
    assert totals[("USER_WALLET", "KES")] == (1_300_00, 2)
    assert totals[("MPESA_FLOAT", "KES")] == (1_300_00, 1)
    assert totals[("USER_WALLET", "USD")] == (7_00, 2)  # every user's wallets opened at registration
    currencies = {c.currency: c for c in report.currency_totals}
    assert currencies["KES"].debits_cents == currencies["KES"].credits_cents == 1_700_00
    assert all(c.balanced for c in report.currency_totals)
    statuses = {(t.type, t.status): (t.count, t.amount.amount_cents) for t in report.transactions}
    assert statuses == {("DEPOSIT", "OUTCOME_UNKNOWN"): (1, 1_500_00), ("DEPOSIT", "PENDING"): (1, 250_00)}
    assert report.transactions_needing_attention == 1
    assert report.open_mpesa_callback_reviews == 0
    assert report.generated_at.seconds == int(api.clock.now().timestamp())


async def test_outbox_stats(api: Harness) -> None:
    await api.new_account()  # UserRegistered, DeviceAdded, ... go to the outbox
    operator = api.operator_auth()
    before = await api.ops.GetOutboxStats(ops_pb2.GetOutboxStatsRequest(), metadata=operator)
    assert before.pending >= 2 and before.published == 0
    assert before.HasField("oldest_pending_occurred_at")
    assert sum(before.pending_by_stream.values()) == before.pending

    async with api.core.engine.begin() as connection:
        claimed = await claim_pending(connection, 1)
        await mark_published(connection, [claimed[0].id], api.clock.now())
    after = await api.ops.GetOutboxStats(ops_pb2.GetOutboxStatsRequest(), metadata=operator)
    assert (after.pending, after.published) == (before.pending - 1, 1)
    assert after.max_publish_attempts == 1


async def test_dead_letter_stats_and_replay(start_api: StartApi, bus: RedisStreamsBus) -> None:
    api = await start_api(bus=bus)
    operator = api.operator_auth()
    await bus.ensure_group("penpay.payments", "sagas")
    await bus.publish(
        [
            ("penpay.payments", {"event_type": "DepositInitiated", "event_id": f"e{i}", "payload": "{}"})
            for i in range(3)
        ]
    )
    deliveries: list[Delivery] = await bus.read(["penpay.payments"], "sagas", "c1", count=3, block_ms=100)
    for delivery in deliveries:
        await bus.dead_letter(delivery, group="sagas", consumer="c1", error="boom")

    stats = await api.ops.GetDeadLetterStats(ops_pb2.GetDeadLetterStatsRequest(), metadata=operator)
    assert stats.total == 3
    (stream,) = stats.streams
    assert stream.stream == "penpay.payments" and stream.count == 3
    assert dict(stream.by_group) == {"sagas": 3} and dict(stream.by_event_type) == {"DepositInitiated": 3}

    dead = await bus.list_dead("penpay.payments")
    one = await api.ops.ReplayDeadLetters(
        ops_pb2.ReplayDeadLettersRequest(stream="penpay.payments", dead_letter_id=dead[0].dead_id),
        metadata=operator,
    )
    assert [r.dead_letter_id for r in one.replayed] == [dead[0].dead_id] and one.replayed[0].new_message_id
    rest = await api.ops.ReplayDeadLetters(ops_pb2.ReplayDeadLettersRequest(), metadata=operator)
    assert len(rest.replayed) == 2
    assert (
        await api.ops.GetDeadLetterStats(ops_pb2.GetDeadLetterStatsRequest(), metadata=operator)
    ).total == 0
    again = await bus.read(["penpay.payments"], "sagas", "c1", count=10, block_ms=100)
    assert sorted(d.fields["event_id"] for d in again) == ["e0", "e1", "e2"]

    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await api.ops.ReplayDeadLetters(
            ops_pb2.ReplayDeadLettersRequest(stream="penpay.payments", dead_letter_id="1-1"),
            metadata=operator,
        )
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details_of(unknown.value).violations] == ["dead_letter_id"]


async def test_consistency_check_finds_an_unbalanced_ledger(api: Harness) -> None:
    account = await api.new_account()
    await move(api, account.user_id, 1_000_00)
    operator = api.operator_auth()
    clean = await api.ops.RunConsistencyCheck(ops_pb2.RunConsistencyCheckRequest(), metadata=operator)
    assert clean.consistent and list(clean.problems) == []

    # One entry written behind the ledger's back: debits no longer equal credits.
    async with api.core.engine.begin() as connection:
        posting = (await connection.execute(ledger_postings.select())).first()
        entry = (await connection.execute(ledger_entries.select())).first()
        assert posting is not None and entry is not None
        await connection.execute(
            insert(ledger_entries).values(
                id=LedgerEntryId.new().value,
                posting_id=posting.id,
                account_id=entry.account_id,
                side="DEBIT",
                amount_cents=1,
                amount_currency="KES",
                transaction_id=None,
                created_at=api.clock.now(),
            )
        )
    broken = await api.ops.RunConsistencyCheck(ops_pb2.RunConsistencyCheckRequest(), metadata=operator)
    assert not broken.consistent
    assert "LEDGER_UNBALANCED" in {p.check for p in broken.problems}
    assert broken.checked_at.seconds == int(api.clock.now().timestamp())


async def test_consistency_check_unavailable_is_unimplemented(start_api: StartApi) -> None:
    api = await start_api(consistency_check=None)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await api.ops.RunConsistencyCheck(ops_pb2.RunConsistencyCheckRequest(), metadata=api.operator_auth())
    assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_auditor_verdicts_for_any_staff_role_and_no_user(api: Harness) -> None:
    from datetime import timedelta

    from penpay_api.auth import VIEWER_ROLE
    from workers.auditor import Auditor

    await move(api, (await api.new_account()).user_id, 1_000_00)
    auditor = Auditor(api.core.engine, clock=api.clock)
    await auditor.run_once()
    api.clock.advance(timedelta(minutes=1))
    await auditor.run_once()
    token, _ = api.tokens.issue_operator_token(operator="vera", now=api.clock.now(), roles=(VIEWER_ROLE,))
    viewer = (("authorization", f"Bearer {token}"),)

    latest = await api.ops.GetAuditorVerdicts(ops_pb2.GetAuditorVerdictsRequest(), metadata=viewer)
    assert [v.check for v in latest.verdicts] == [
        "float_leases",
        "funding_in_capital",
        "stale_transactions",
        "float_mpesa",
        "float_deriv",
        "audit_chain",
        "account_balances",
        "no_overdraft",
        "ledger_sums",
    ]  # newest first: one run
    assert len({v.run_id for v in latest.verdicts}) == 1 and not latest.failing
    sums = next(v for v in latest.verdicts if v.check == "ledger_sums")
    assert sums.status == "OK" and '"KES": 0' in sums.details_json
    both = await api.ops.GetAuditorVerdicts(
        ops_pb2.GetAuditorVerdictsRequest(runs=2, check="ledger_sums"), metadata=viewer
    )
    assert [v.check for v in both.verdicts] == ["ledger_sums", "ledger_sums"]
    assert len({v.run_id for v in both.verdicts}) == 2

    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await api.ops.GetAuditorVerdicts(ops_pb2.GetAuditorVerdictsRequest(check="nope"), metadata=viewer)
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in details_of(bad.value).violations] == ["check"]
    user = await api.new_account()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await api.ops.GetAuditorVerdicts(ops_pb2.GetAuditorVerdictsRequest(), metadata=user.auth)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
