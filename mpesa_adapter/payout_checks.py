"""Reconciliation of confirmed B2C payouts with M-Pesa's own records, over Daraja only.

- `payout_record`: M-Pesa's word on a payout as it arrived, its result callback (or the Transaction
  Status answer that confirmed it): the amount paid and the recipient as shown (maybe masked);
- `check_payouts`: Transaction Status about each payout's receipt under its OriginatorConversationID
  (the Occasion), all asked first, the answers then awaited together. The callback endpoints check an
  answer as they check the sagas' own: one that confirms a payout already CONFIRMED is audited under
  the query's ConversationID (`STATUS_CONFIRMED_AGAIN`); one that denies it (no such receipt, another
  payout, another amount) is kept in `mpesa_callback_reviews` under our id or the query's. Neither
  within the wait: no answer yet (the next run asks again).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from application.reconciliation.ports import Payout, PayoutCheck, ProviderRecord
from application.reconciliation.rules import Amount
from mpesa_adapter import errors
from mpesa_adapter.callback_parsing import parse_b2c_result, parse_status_result, strict_json
from mpesa_adapter.callback_store import STATUS_CONFIRMED_AGAIN, STATUS_QUERY_SUBJECT
from mpesa_adapter.confirmer import DarajaQueries
from mpesa_adapter.inbox import ReviewReason
from mpesa_adapter.review_table import review_tally
from persistence.tables import audit_logs, audit_pending


def payout_record(payout: Payout) -> ProviderRecord | None:
    """The amount and recipient M-Pesa's result gave (a Transaction Status answer names the recipient
    CreditPartyName). None when PenPay holds no result of M-Pesa's for it."""
    if not payout.raw_result:
        return None
    try:
        data = strict_json(payout.raw_result.encode())
    except ValueError:  # MalformedCallback
        return None
    if not isinstance(data.get("Result"), dict):
        return None
    raw = payout.raw_result.encode()
    paid, party = None, ""
    for read in (_b2c_result, _status_result):
        try:
            paid, party = read(data, raw)
        except (ValueError, KeyError, TypeError, errors.MpesaAdapterError):
            continue
        if paid is not None:
            break
    if paid is None:
        return None
    return ProviderRecord(
        ref=payout.receipt or payout.originator_conversation_id,
        amount=Amount(int(paid * 100), "KES"),
        credit=False,
        occurred_at=payout.created_at,
        reference=payout.originator_conversation_id,
        transaction_hint=payout.transaction_id,
        party=_number(party),
    )


def _b2c_result(data: dict[str, Any], raw: bytes) -> tuple[Decimal | None, str]:
    result = parse_b2c_result(data, raw)
    return result.amount, result.receiver or ""


def _status_result(data: dict[str, Any], raw: bytes) -> tuple[Decimal | None, str]:
    result = parse_status_result(data, raw)
    return result.amount, str(result.envelope.param("CreditPartyName") or "")


def _number(receiver: str) -> str:
    """`254708374149 - John Doe` (or `0708***149 - John`): the number part only."""
    return receiver.split(" - ", 1)[0].strip()


@dataclass
class _Asked:
    payout: Payout
    query: str  # the Transaction Status query's ConversationID
    reviews: int  # answers kept for review about the payout before asking


class PayoutChecks:
    def __init__(
        self, client: DarajaQueries, engine: AsyncEngine, *, wait: float = 30.0, poll_interval: float = 0.1
    ) -> None:
        self._client = client
        self._engine = engine
        self._wait = wait
        self._interval = poll_interval

    async def check(self, payouts: list[Payout]) -> dict[str, PayoutCheck]:
        found: dict[str, PayoutCheck] = {}
        asked: list[_Asked] = []
        for payout in payouts:
            ocid = payout.originator_conversation_id
            if not payout.receipt:
                found[ocid] = PayoutCheck(False, "confirmed without a receipt to ask M-Pesa about")
                continue
            before = await review_tally(self._engine, ocid, None)
            try:
                accepted = await self._client.transaction_status(
                    transaction_id=payout.receipt, occasion=ocid, remarks="PenPay reconciliation"
                )
            except errors.DarajaError as error:
                found[ocid] = PayoutCheck(None, f"Transaction Status refused: {error.error_code}")
                continue
            except errors.MpesaAdapterError as error:
                # not sent, or not answered about this request: nothing learnt, asked again next run
                found[ocid] = PayoutCheck(None, f"Transaction Status not answered: {type(error).__name__}")
                continue
            asked.append(_Asked(payout, accepted.conversation_id, before.count))
        try:
            async with asyncio.timeout(self._wait):
                while asked:
                    for a in list(asked):
                        answer = await self._answer(a)
                        if answer is not None:
                            found[a.payout.originator_conversation_id] = answer
                            asked.remove(a)
                    if asked:
                        await asyncio.sleep(self._interval)
        except TimeoutError:
            pass
        for a in asked:
            found[a.payout.originator_conversation_id] = PayoutCheck(
                None, f"Transaction Status asked (ConversationID {a.query}), no answer yet"
            )
        return found

    async def _answer(self, asked: _Asked) -> PayoutCheck | None:
        async with self._engine.connect() as conn:
            for t in (audit_logs, audit_pending):
                row = (
                    await conn.execute(
                        select(t.c.id)
                        .where(t.c.subject_type == STATUS_QUERY_SUBJECT)
                        .where(t.c.subject_id == asked.query)
                        .where(t.c.action == STATUS_CONFIRMED_AGAIN)
                    )
                ).first()
                if row is not None:
                    return PayoutCheck(True, f"Transaction Status confirms {asked.payout.receipt}")
        now = await review_tally(self._engine, asked.payout.originator_conversation_id, asked.query)
        if now.count > asked.reviews:
            # The inbox refuses a result showing another payee (PHONE_MISMATCH): M-Pesa has the receipt
            # we hold, paid to someone else. That is a party mismatch, never "missing at the provider".
            return PayoutCheck(
                False,
                f"M-Pesa does not confirm {asked.payout.receipt}: {now.describe()}"[:300],
                party_differs=now.reason == ReviewReason.PHONE_MISMATCH,
            )
        return None
