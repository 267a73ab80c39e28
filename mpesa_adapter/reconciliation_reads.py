"""Reconciliation's reads of M-Pesa over Daraja's own APIs (never the simulator's control API):
Pull Transactions for the shortcode's C2B payments, Transaction Status for a payout not yet confirmed,
Account Balance (asked, then its result awaited from the callback the inbox audits)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from application.reconciliation.ports import (
    MPESA_B2C,
    MPESA_C2B,
    MPESA_FLOAT,
    Payout,
    PayoutCheck,
    ProviderReadFailed,
    ProviderRecord,
)
from application.reconciliation.rules import Amount
from domain.shared.clock import Clock
from mpesa_adapter import errors
from mpesa_adapter.balance_queries import ask_account_balances
from mpesa_adapter.callback_store import BALANCE_QUERY_ANSWERED, BALANCE_QUERY_SUBJECT, SqlCallbackInbox
from mpesa_adapter.client import DarajaClient
from mpesa_adapter.confirmer import CallbackConfirmer
from mpesa_adapter.payout_checks import PayoutChecks, payout_record
from mpesa_adapter.pull_reads import PullReads
from persistence.tables import audit_logs, audit_pending

# B2C pays from the Utility Account, and collections land there in PenPay's set-up: the float mirrors it.
FLOAT_ACCOUNT = "Utility Account"


def utility_balance(account_balance: str, account: str = FLOAT_ACCOUNT) -> Amount:
    """`name|currency|amount|...&...`: the first amount of `account`, in minor units."""
    for part in account_balance.split("&"):
        fields = part.split("|")
        if len(fields) >= 3 and fields[0].strip() == account:
            try:
                cents = Decimal(fields[2]) * 100
            except InvalidOperation:
                break
            return Amount(int(cents), fields[1].strip())
    raise ProviderReadFailed(MPESA_FLOAT, f"no {account} in the Account Balance result")


class DarajaReconciliationReads:
    """The inbox (where Daraja's answers land) and the clock that stamps each query come from the
    composition root (penpay/reconcile/wiring.py): the reads build neither."""

    def __init__(
        self,
        client: DarajaClient,
        engine: AsyncEngine,
        *,
        inbox: SqlCallbackInbox,  # the composition root's (penpay.bootstrap.callback_inbox)
        clock: Clock,
        pulls: PullReads,  # the composition root's (penpay.bootstrap.pull_reads)
        balance_wait: float = 30.0,
    ) -> None:
        self._client = client
        self._engine = engine
        self._store = inbox
        self._clock = clock
        self._confirmer = CallbackConfirmer(client, self._store)
        self._pulls = pulls
        self._balance_wait = balance_wait
        self._payouts = PayoutChecks(client, engine, wait=balance_wait)

    async def pulled_c2b(self, start: datetime, end: datetime) -> list[ProviderRecord]:
        """The C2B payments of every shortcode PenPay collects under (STK pushes and the paybill may
        be separate shortcodes, each with its own list), each record tagged with its shortcode."""
        records: list[ProviderRecord] = []
        for shortcode in self._pulls.shortcodes:
            try:
                pulled = await self._pulls.pulled(start, end, shortcode=shortcode)
            except errors.MpesaAdapterError as failed:
                raise ProviderReadFailed(MPESA_C2B, f"shortcode {shortcode}: {failed}") from None
            records += [
                ProviderRecord(
                    ref=p.receipt,
                    amount=Amount(p.amount_cents, "KES"),
                    credit=True,
                    occurred_at=p.occurred_at.astimezone(UTC),
                    reference=p.bill_reference,
                    party=p.msisdn_shown,
                    account=shortcode,
                )
                for p in pulled
            ]
        return records

    async def ask_b2c_status(self, originator_conversation_id: str) -> None:
        """Transaction Status by OriginatorConversationID: the answer settles the row at the status
        ResultURL (the inbox), where the sagas and the next run read it."""
        try:
            await self._confirmer.confirm_b2c(originator_conversation_id)
        except errors.MpesaAdapterError as failed:
            raise ProviderReadFailed(MPESA_B2C, str(failed)) from None

    def payout_record(self, payout: Payout) -> ProviderRecord | None:
        return payout_record(payout)

    async def check_payouts(self, payouts: list[Payout]) -> dict[str, PayoutCheck]:
        return await self._payouts.check(payouts)

    async def mpesa_balance(self) -> dict[str, Amount]:
        """The Utility Account of every shortcode holding part of the float (collections land on the
        paybill/STK shortcodes, payouts leave the B2C one), each read from the answer to its own query."""
        try:
            asked = await ask_account_balances(self._client, self._store, now=self._clock.now())
        except errors.MpesaAdapterError as failed:
            raise ProviderReadFailed(MPESA_FLOAT, str(failed)) from None
        balances: dict[str, Amount] = {}
        try:
            async with asyncio.timeout(self._balance_wait):
                for shortcode, accepted in asked.items():
                    balances[shortcode] = await self._awaited(accepted.conversation_id)
        except TimeoutError:
            missing = [code for code in asked if code not in balances]
            raise ProviderReadFailed(
                MPESA_FLOAT, f"no Account Balance result arrived for shortcode {', '.join(missing)}"
            ) from None
        return balances

    async def _awaited(self, conversation_id: str) -> Amount:
        """The answer to one query, once the inbox has taken it (polled: it arrives by callback)."""
        while True:
            answer = await self._answer(conversation_id)
            if answer is not None:
                return answer
            await asyncio.sleep(0.1)

    async def _answer(self, conversation_id: str) -> Amount | None:
        async with self._engine.connect() as conn:
            for t in (audit_logs, audit_pending):
                row = (
                    await conn.execute(
                        select(t.c.details)
                        .where(t.c.subject_type == BALANCE_QUERY_SUBJECT)
                        .where(t.c.subject_id == conversation_id)
                        .where(t.c.action == BALANCE_QUERY_ANSWERED)
                    )
                ).first()
                if row is not None:
                    details = json.loads(row.details)
                    if str(details.get("result_code")) != "0" or not details.get("account_balance"):
                        raise ProviderReadFailed(MPESA_FLOAT, f"Account Balance failed: {details}")
                    return utility_balance(str(details["account_balance"]))
        return None
