"""penpay.wallet.v1.WalletService over application.wallet.queries.WalletQueries."""

from __future__ import annotations

import grpc

from application.wallet.queries import WalletEntry, WalletQueries
from domain.shared.errors import InvalidValue
from domain.wallet.account_kind import LedgerSide
from penpay.wallet.v1 import wallet_pb2 as pb
from penpay.wallet.v1 import wallet_pb2_grpc as pb_grpc
from penpay_api.services._common import caller_id, from_timestamp, money, timestamp

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["WalletService"].full_name
_SIDES = {LedgerSide.DEBIT: pb.LEDGER_SIDE_DEBIT, LedgerSide.CREDIT: pb.LEDGER_SIDE_CREDIT}


def _entry(entry: WalletEntry) -> pb.LedgerEntry:
    return pb.LedgerEntry(
        ledger_entry_id=str(entry.ledger_entry_id),
        ledger_account_id=str(entry.ledger_account_id),
        transaction_id=str(entry.transaction_id) if entry.transaction_id else "",
        side=_SIDES[entry.side],
        amount=money(entry.amount),
        balance_change_cents=entry.balance_change_minor,
        description=entry.description,
        created_at=timestamp(entry.created_at),
    )


class WalletServicer(pb_grpc.WalletServiceServicer):
    def __init__(self, queries: WalletQueries) -> None:
        self._queries = queries

    async def GetBalances(
        self, request: pb.GetBalancesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetBalancesResponse:
        balances = await self._queries.get_balances(caller_id())
        return pb.GetBalancesResponse(
            balances=[
                pb.Balance(
                    ledger_account_id=str(b.ledger_account_id),
                    balance=money(b.balance),
                    updated_at=timestamp(b.updated_at),
                )
                for b in balances
            ]
        )

    async def ListLedgerEntries(
        self, request: pb.ListLedgerEntriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListLedgerEntriesResponse:
        page = await self._queries.list_ledger_entries(
            caller_id(), currency=request.currency, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListLedgerEntriesResponse(
            ledger_entries=[_entry(e) for e in page.items], next_page_token=page.next_page_token or ""
        )

    async def GetStatement(
        self, request: pb.GetStatementRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetStatementResponse:
        user_id = caller_id()
        if not request.HasField("start_time"):
            raise InvalidValue("start_time is required", field="start_time")
        if not request.HasField("end_time"):
            raise InvalidValue("end_time is required", field="end_time")
        statement = await self._queries.get_statement(
            user_id,
            currency=request.currency,
            start=from_timestamp(request.start_time),
            end=from_timestamp(request.end_time),
        )
        return pb.GetStatementResponse(
            currency=statement.currency.value,
            start_time=timestamp(statement.start),
            end_time=timestamp(statement.end),
            opening_balance=money(statement.opening_balance),
            total_credits=money(statement.total_credits),
            total_debits=money(statement.total_debits),
            closing_balance=money(statement.closing_balance),
            ledger_entries=[_entry(e) for e in statement.entries],
            truncated=statement.truncated,
        )
