"""penpay.wallet.v1.WalletService: balances, ledger entries and statements from the real ledger."""

from __future__ import annotations

from datetime import datetime, timedelta

import grpc
import pytest
from google.protobuf import timestamp_pb2

from domain.wallet.money import Currency
from penpay.wallet.v1 import wallet_pb2

from .conftest import Harness, details_of
from .ledger import move

pytestmark = pytest.mark.integration


def ts(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def test_balances_per_currency(api: Harness) -> None:
    account = await api.new_account()
    empty = await api.wallet.GetBalances(wallet_pb2.GetBalancesRequest(), metadata=account.auth)
    # opened at registration, at zero
    assert {(b.balance.currency, b.balance.amount_cents) for b in empty.balances} == {("KES", 0), ("USD", 0)}

    await move(api, account.user_id, 10_000_00)
    await move(api, account.user_id, 2_500_00, out=True)
    await move(api, account.user_id, 40_00, currency=Currency.USD)

    reply = await api.wallet.GetBalances(wallet_pb2.GetBalancesRequest(), metadata=account.auth)
    balances = {b.balance.currency: b.balance.amount_cents for b in reply.balances}
    assert balances == {"KES": 7_500_00, "USD": 40_00}
    assert all(b.ledger_account_id and b.updated_at.seconds for b in reply.balances)


async def test_ledger_entries_newest_first_in_pages(api: Harness) -> None:
    account = await api.new_account()
    start = api.clock.now()
    for i in range(5):
        await move(
            api, account.user_id, (i + 1) * 100_00, at=start + timedelta(minutes=i), description=f"p{i}"
        )
    await move(api, account.user_id, 1_00, currency=Currency.USD, at=start + timedelta(minutes=9))

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await api.wallet.ListLedgerEntries(
            wallet_pb2.ListLedgerEntriesRequest(currency="KES", page_size=2, page_token=token),
            metadata=account.auth,
        )
        pages += 1
        seen.extend(e.description for e in page.ledger_entries)
        assert all(e.side == wallet_pb2.LEDGER_SIDE_CREDIT for e in page.ledger_entries)
        assert all(e.balance_change_cents == e.amount.amount_cents > 0 for e in page.ledger_entries)
        token = page.next_page_token
        if not token:
            break
    assert seen == ["p4", "p3", "p2", "p1", "p0"] and pages == 3

    everything = await api.wallet.ListLedgerEntries(
        wallet_pb2.ListLedgerEntriesRequest(), metadata=account.auth
    )
    assert [e.amount.currency for e in everything.ledger_entries] == ["USD"] + ["KES"] * 5


async def test_ledger_entries_refuse_bad_paging(api: Harness) -> None:
    account = await api.new_account()
    for request, field in (
        (wallet_pb2.ListLedgerEntriesRequest(page_size=500), "page_size"),
        (wallet_pb2.ListLedgerEntriesRequest(page_token="not-a-token"), "page_token"),
        (wallet_pb2.ListLedgerEntriesRequest(currency="EUR"), "currency"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await api.wallet.ListLedgerEntries(request, metadata=account.auth)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in details_of(refused.value).violations] == [field]


async def test_statement_opening_totals_and_closing(api: Harness) -> None:
    account = await api.new_account()
    day = api.clock.now()
    await move(api, account.user_id, 1_000_00, at=day - timedelta(days=2))  # before the period
    await move(api, account.user_id, 300_00, out=True, at=day - timedelta(days=1, hours=1))  # before
    await move(api, account.user_id, 500_00, at=day - timedelta(hours=12), description="in 1")
    await move(api, account.user_id, 200_00, out=True, at=day - timedelta(hours=6), description="out 1")
    await move(api, account.user_id, 50_00, at=day + timedelta(hours=1), description="after")  # after

    statement = await api.wallet.GetStatement(
        wallet_pb2.GetStatementRequest(
            currency="KES", start_time=ts(day - timedelta(days=1)), end_time=ts(day)
        ),
        metadata=account.auth,
    )
    assert statement.opening_balance.amount_cents == 700_00
    assert statement.total_credits.amount_cents == 500_00
    assert statement.total_debits.amount_cents == 200_00
    assert statement.closing_balance.amount_cents == 1_000_00
    assert [e.description for e in statement.ledger_entries] == ["in 1", "out 1"]
    assert [e.balance_change_cents for e in statement.ledger_entries] == [500_00, -200_00]
    assert not statement.truncated and statement.currency == "KES"


async def test_statement_refuses_incomplete_or_backwards_periods(api: Harness) -> None:
    account = await api.new_account()
    now = api.clock.now()
    for request, field in (
        (wallet_pb2.GetStatementRequest(currency="KES", end_time=ts(now)), "start_time"),
        (wallet_pb2.GetStatementRequest(currency="KES", start_time=ts(now)), "end_time"),
        (
            wallet_pb2.GetStatementRequest(start_time=ts(now - timedelta(days=1)), end_time=ts(now)),
            "currency",
        ),
        (
            wallet_pb2.GetStatementRequest(
                currency="KES", start_time=ts(now), end_time=ts(now - timedelta(days=1))
            ),
            "end_time",
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await api.wallet.GetStatement(request, metadata=account.auth)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in details_of(refused.value).violations] == [field]
