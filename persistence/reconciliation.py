"""Reconciliation's storage: runs, items (once per item_key), cursors; the evidence and ledger reads it
compares with the providers' records. Suspense postings are booked in the transaction that first
records their item, so a re-run never books one twice."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from application.ledger import book
from application.payments import bookings
from application.payments.paybill import RECONCILED, SETTLED, PaybillPayment
from application.payments.paybill import Status as PaybillStatus
from application.reconciliation.closing import RESOLVED, ProviderRecord, resolution_stands
from application.reconciliation.ports import MPESA_B2C, MPESA_C2B, Evidence, Item, PaybillHeld, Payout
from application.reconciliation.rules import CLASSES, Amount, ItemClass
from domain.shared.ids import new_uuid7
from domain.wallet.account_kind import AccountKind
from domain.wallet.money import Currency, Money
from persistence import ledger_balances
from persistence.reconciliation_closing import record_of
from persistence.tables import (
    c2b_payments,
    deriv_transfers,
    deriv_withdrawals,
    ledger_accounts,
    ledger_entries,
    mpesa_disbursements,
    mpesa_requests,
    reconciliation_cursors,
    reconciliation_items,
    reconciliation_runs,
    transactions,
)
from persistence.unit_of_work import SqlUnitOfWork

_UNSETTLED_B2C = ("SENT", "UNKNOWN", "SUCCEEDED")
_PAID_STK = ("CONFIRMED", "SUCCEEDED")


def _uuid(text: str) -> Any:
    import uuid

    return uuid.UUID(text)


class SqlReconciliationStore:
    def __init__(
        self, engine: AsyncEngine, *, unit_of_work: Callable[[], SqlUnitOfWork] | None = None
    ) -> None:
        self._engine = engine
        # The composition root hands in its own (the deployment's clock and PII keys); reads alone
        # (the Ops API's lists) need none.
        self._uow = unit_of_work or (lambda: SqlUnitOfWork(engine, actor="reconciliation"))

    # --- runs and cursors ------------------------------------------------------------------------

    async def start_run(self, trigger: str, start: datetime, end: datetime, now: datetime) -> str:
        run_id = new_uuid7()
        async with self._engine.begin() as conn:
            await conn.execute(
                reconciliation_runs.insert().values(
                    id=run_id,
                    trigger=trigger,
                    window_from=start,
                    window_to=end,
                    status="RUNNING",
                    counts="{}",
                    unexplained=0,
                    started_at=now,
                )
            )
        return str(run_id)

    async def finish_run(
        self,
        run_id: str,
        status: str,
        counts: dict[str, int],
        unexplained: int,
        error: str | None,
        now: datetime,
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(reconciliation_runs)
                .where(reconciliation_runs.c.id == _uuid(run_id))
                .values(
                    status=status,
                    counts=json.dumps(counts, sort_keys=True),
                    unexplained=unexplained,
                    error=error[:500] if error else None,
                    finished_at=now,
                )
            )

    async def cursor(self, source: str) -> datetime | None:
        async with self._engine.connect() as conn:
            value = (
                await conn.execute(
                    select(reconciliation_cursors.c.reconciled_to).where(
                        reconciliation_cursors.c.source == source
                    )
                )
            ).scalar_one_or_none()
        return value

    async def advance_cursor(self, source: str, to: datetime, now: datetime) -> None:
        async with self._engine.begin() as conn:
            t = reconciliation_cursors
            current = (
                await conn.execute(select(t.c.reconciled_to).where(t.c.source == source).with_for_update())
            ).scalar_one_or_none()
            if current is None:
                await conn.execute(t.insert().values(source=source, reconciled_to=to, updated_at=now))
            elif current < to:
                await conn.execute(
                    update(t).where(t.c.source == source).values(reconciled_to=to, updated_at=now)
                )

    # --- evidence --------------------------------------------------------------------------------

    async def _evidence(self, query: Any, kind: str = "") -> list[Evidence]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Evidence(
                transaction_id=str(r.transaction_id),
                provider_ref=None if r.ref is None else str(r.ref),
                amount=Amount(int(r.amount_cents), str(r.amount_currency)),
                status=str(r.status),
                created_at=r.created_at,
                kind=kind,
                party=str(getattr(r, "party", None) or ""),
            )
            for r in rows
        ]

    @staticmethod
    def _stk_query() -> Any:
        """MpesaRequests with the party PenPay holds: the number an STK push went to, or for a paybill
        deposit (`C2B-<TransID>`) the payer as its confirmation showed them (not the user's number:
        anyone may pay a deposit reference)."""
        t, c = mpesa_requests, c2b_payments
        paybill = t.c.checkout_request_id.like("C2B-%")
        party = case((paybill, func.coalesce(c.c.msisdn_shown, "")), else_=t.c.phone)
        return select(
            t.c.transaction_id,
            t.c.mpesa_receipt_number.label("ref"),
            t.c.amount_cents,
            t.c.amount_currency,
            t.c.status,
            t.c.created_at,
            party.label("party"),
        ).select_from(t.outerjoin(c, and_(paybill, c.c.trans_id == t.c.mpesa_receipt_number)))

    async def stk_evidence(self, start: datetime, end: datetime) -> list[Evidence]:
        """Every STK push of the window, whatever its status (one still open explains a payment M-Pesa
        already lists)."""
        t = mpesa_requests
        query = self._stk_query().where(t.c.created_at >= start, t.c.created_at < end)
        return await self._evidence(query)

    async def stk_evidence_by_receipt(self, receipts: list[str]) -> dict[str, Evidence]:
        if not receipts:
            return {}
        query = self._stk_query().where(
            mpesa_requests.c.status.in_(_PAID_STK),
            mpesa_requests.c.mpesa_receipt_number.is_not(None),
            mpesa_requests.c.mpesa_receipt_number.in_(receipts),
        )
        return {e.provider_ref: e for e in await self._evidence(query) if e.provider_ref}

    @staticmethod
    def _deriv_queries() -> list[Any]:
        queries = []
        for t in (deriv_transfers, deriv_withdrawals):
            queries.append(
                select(
                    t.c.transaction_id,
                    t.c.deriv_transaction_id.label("ref"),
                    t.c.amount_cents,
                    t.c.amount_currency,
                    t.c.status,
                    t.c.created_at,
                ).where(t.c.deriv_transaction_id.is_not(None))
            )
        return queries

    async def deriv_evidence(self, start: datetime, end: datetime) -> list[Evidence]:
        found = []
        for query, t, kind in self._deriv_tables():
            found += await self._evidence(query.where(t.c.created_at >= start, t.c.created_at < end), kind)
        return found

    def _deriv_tables(self) -> list[tuple[Any, Any, str]]:
        return list(
            zip(
                self._deriv_queries(),
                (deriv_transfers, deriv_withdrawals),
                ("transfer", "withdrawal"),
                strict=True,
            )
        )

    async def deriv_evidence_of(self, transaction_ids: list[str]) -> list[Evidence]:
        ids = [_uuid(t) for t in set(transaction_ids)]
        if not ids:
            return []
        found = []
        for query, t, kind in self._deriv_tables():
            found += await self._evidence(query.where(t.c.transaction_id.in_(ids)), kind)
        return found

    async def deriv_evidence_by_ref(self, refs: list[str]) -> dict[str, Evidence]:
        ids = [int(r) for r in refs if r.isdigit()]
        if not ids:
            return {}
        found: dict[str, Evidence] = {}
        for query, t, kind in self._deriv_tables():
            for e in await self._evidence(query.where(t.c.deriv_transaction_id.in_(ids)), kind):
                if e.provider_ref:
                    found[e.provider_ref] = e
        return found

    async def paybill_payments(self, trans_ids: list[str]) -> dict[str, PaybillHeld]:
        if not trans_ids:
            return {}
        t = c2b_payments
        query = select(
            t.c.trans_id, t.c.amount_cents, t.c.amount_currency, t.c.status, t.c.msisdn_shown
        ).where(t.c.trans_id.in_(sorted(set(trans_ids))))
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {
            str(r.trans_id): PaybillHeld(
                str(r.trans_id),
                Amount(int(r.amount_cents), str(r.amount_currency)),
                str(r.status),
                str(r.msisdn_shown or ""),
            )
            for r in rows
        }

    async def known_transactions(self, ids: list[str]) -> set[str]:
        wanted = []
        for text in ids:
            try:
                wanted.append(_uuid(text))
            except ValueError:
                continue
        if not wanted:
            return set()
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(transactions.c.id).where(transactions.c.id.in_(wanted)))
            return {str(r.id) for r in rows}

    async def unconfirmed_b2c(self, start: datetime, end: datetime) -> list[Evidence]:
        t = mpesa_disbursements
        query = select(
            t.c.transaction_id,
            t.c.originator_conversation_id.label("ref"),
            t.c.amount_cents,
            t.c.amount_currency,
            t.c.status,
            t.c.created_at,
        ).where(t.c.status.in_(_UNSETTLED_B2C), t.c.created_at >= start, t.c.created_at < end)
        return await self._evidence(query)

    async def confirmed_payouts(self, start: datetime, end: datetime) -> list[Payout]:
        t, i = mpesa_disbursements, reconciliation_items
        async with self._engine.connect() as conn:
            awaited = [
                str(key).removeprefix("b2c:")
                for key in (
                    await conn.execute(
                        select(i.c.item_key).where(
                            i.c.source == MPESA_B2C, i.c.item_class == ItemClass.AWAITING_PROVIDER.value
                        )
                    )
                ).scalars()
            ]
            query = select(t).where(
                t.c.status == "CONFIRMED",
                or_(
                    and_(t.c.created_at >= start, t.c.created_at < end),
                    t.c.originator_conversation_id.in_(awaited),
                ),
            )
            rows = (await conn.execute(query)).all()
        return [
            Payout(
                transaction_id=str(r.transaction_id),
                originator_conversation_id=str(r.originator_conversation_id),
                receipt=r.transaction_receipt,
                amount=Amount(int(r.amount_cents), str(r.amount_currency)),
                created_at=r.created_at,
                phone=str(r.phone),
                raw_result=str(r.raw_result or ""),
            )
            for r in rows
        ]

    async def item_states(self, keys: list[str]) -> dict[str, tuple[str, str | None]]:
        if not keys:
            return {}
        t = reconciliation_items
        query = select(t.c.item_key, t.c.item_class, t.c.provider_ref).where(t.c.item_key.in_(keys))
        async with self._engine.connect() as conn:
            rows = await conn.execute(query)
            return {str(r.item_key): (str(r.item_class), r.provider_ref) for r in rows}

    # --- ledger ----------------------------------------------------------------------------------

    async def float_movement(
        self,
        transaction_ids: list[str],
        float_kind: str,
        *,
        into_float_only: bool = False,
        out_of_float_only: bool = False,
    ) -> dict[str, Amount]:
        """Net movement of the float per transaction: a debit (money into the provider account) counts
        positive, a credit negative. `into_float_only`: the debits alone (a customer's payment, compared
        with what M-Pesa received; a refund of it is a payout of its own, checked as one)."""
        ids = [_uuid(t) for t in set(transaction_ids)]
        if not ids:
            return {}
        e, a = ledger_entries, ledger_accounts
        signed = func.sum(
            func.IF(e.c.side == "DEBIT", e.c.amount_cents, -e.c.amount_cents)
            if self._engine.dialect.name != "sqlite"
            else func.iif(e.c.side == "DEBIT", e.c.amount_cents, -e.c.amount_cents)
        )
        query = (
            select(e.c.transaction_id, e.c.amount_currency, signed.label("net"))
            .select_from(e.join(a, e.c.account_id == a.c.id))
            .where(and_(a.c.kind == float_kind, e.c.transaction_id.in_(ids)))
            .where(e.c.side == "DEBIT" if into_float_only else true())
            .where(e.c.side == "CREDIT" if out_of_float_only else true())
            .group_by(e.c.transaction_id, e.c.amount_currency)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        sign = -1 if out_of_float_only else 1
        return {str(r.transaction_id): Amount(sign * int(r.net), str(r.amount_currency)) for r in rows}

    async def float_balance(self, float_kind: str, currency: str) -> Amount:
        a = ledger_accounts
        async with self._engine.connect() as conn:
            value = (
                await conn.execute(
                    select(func.sum(ledger_balances.balance(a))).where(
                        a.c.kind == float_kind, a.c.currency == currency
                    )
                )
            ).scalar_one_or_none()
        return Amount(int(value or 0), currency)

    # --- items -----------------------------------------------------------------------------------

    async def record_item(self, run_id: str, item: Item, now: datetime) -> None:
        """Insert the item once; a later run updates its class and run. Its suspense posting (if its
        class books one) is written with the insert, in one transaction. An item an operator closed
        (RESOLVED) stays so while the provider shows the same record; a changed one is queued again."""
        t = reconciliation_items
        async with self._uow() as uow:
            conn = uow.connection
            existing = (
                await conn.execute(
                    select(
                        t.c.id,
                        t.c.item_class,
                        t.c.provider_ref,
                        t.c.provider_amount_cents,
                        t.c.provider_amount_currency,
                        t.c.review_status,
                    )
                    .where(t.c.item_key == item.key)
                    .with_for_update()
                )
            ).first()
            if existing is not None:
                review_status = "OPEN" if CLASSES[item.item_class].review else "NONE"
                if existing.review_status == RESOLVED:
                    seen = ProviderRecord(item.item_class.value, item.provider_ref, item.provider_amount)
                    if resolution_stands(record_of(existing), seen):
                        review_status = RESOLVED  # an operator explained this very record
                    elif review_status == "OPEN":
                        uow.audit(
                            action="reconciliation.item_reopened",
                            subject_type="ReconciliationItem",
                            subject_id=item.key[:64],
                            details={"class": item.item_class.value, "detail": item.detail},
                        )
                await conn.execute(
                    update(t)
                    .where(t.c.id == existing.id)
                    .values(
                        item_class=item.item_class.value,
                        last_run_id=_uuid(run_id),
                        # what the provider shows now (a payout's item names its receipt once confirmed)
                        provider_ref=item.provider_ref,
                        provider_amount_cents=item.provider_amount.cents if item.provider_amount else None,
                        provider_amount_currency=item.provider_amount.currency
                        if item.provider_amount
                        else None,
                        detail=item.detail,
                        review_status=review_status,
                        updated_at=now,
                    )
                )
                await uow.commit()
                return
            posting_id = None
            book_suspense = item.float_kind is not None and item.provider_amount is not None
            if book_suspense and item.source == MPESA_C2B:
                book_suspense = await self._paybill_suspense(uow, item, now)
            if book_suspense and item.float_kind and item.provider_amount is not None:
                amount = Money(item.provider_amount.cents, Currency(item.provider_amount.currency))
                posting = await bookings.unexplained_at_provider(
                    uow.ledger,
                    AccountKind(item.float_kind),
                    amount,
                    into_float=item.credit,
                    note=f"{item.source} {item.provider_ref}",
                )
                await book(uow, posting)
                posting_id = posting.id.value
            await conn.execute(
                t.insert().values(
                    id=new_uuid7(),
                    item_key=item.key,
                    first_run_id=_uuid(run_id),
                    last_run_id=_uuid(run_id),
                    source=item.source,
                    item_class=item.item_class.value,
                    provider_ref=item.provider_ref,
                    transaction_id=_uuid(item.transaction_id) if item.transaction_id else None,
                    provider_amount_cents=item.provider_amount.cents if item.provider_amount else None,
                    provider_amount_currency=item.provider_amount.currency if item.provider_amount else None,
                    penpay_amount_cents=item.penpay_amount.cents if item.penpay_amount else None,
                    penpay_amount_currency=item.penpay_amount.currency if item.penpay_amount else None,
                    occurred_at=item.occurred_at,
                    detail=item.detail,
                    review_status="OPEN" if CLASSES[item.item_class].review else "NONE",
                    suspense_posting_id=posting_id,
                    created_at=now,
                    updated_at=now,
                )
            )
            if CLASSES[item.item_class].review:
                uow.audit(
                    action="reconciliation.item_queued",
                    subject_type="ReconciliationItem",
                    subject_id=item.key[:64],
                    details={"class": item.item_class.value, "detail": item.detail},
                )
            try:
                await uow.commit()
            except IntegrityError:
                # another run recorded it first: theirs stands (and its posting), ours rolls back
                return

    @staticmethod
    async def _paybill_suspense(uow: SqlUnitOfWork, item: Item, now: datetime) -> bool:
        """A C2B payment M-Pesa holds whose confirmation never reached PenPay: its c2b_payments row is
        made (or moved) to SUSPENSE under the TransID's row lock, in the transaction that books it, so
        a confirmation arriving later is a repeat that changes nothing, and the paybill suspense review
        gives it to its owner. False: a confirmation settled it meanwhile (nothing to book; the next
        run sees how)."""
        assert item.provider_ref is not None and item.provider_amount is not None
        why = f"{RECONCILED} M-Pesa holds this payment; its confirmation never reached PenPay"
        payment = PaybillPayment(
            trans_id=item.provider_ref,
            shortcode=item.account,
            bill_ref=item.reference,
            amount_minor=item.provider_amount.cents,
            msisdn=item.party or None,
            raw=json.dumps({"reconciliation_item": item.key, "detail": item.detail}),
        )
        stored = await uow.paybill.lock(item.provider_ref)
        if stored is not None and stored.status in SETTLED:
            return False
        if stored is None:
            if not await uow.paybill.insert(payment, status=PaybillStatus.SUSPENSE, now=now, reason=why):
                return False  # a confirmation inserted it just now: settled by its own path
        else:
            await uow.paybill.update(
                item.provider_ref,
                now=now,
                status=PaybillStatus.SUSPENSE,
                reason=f"{why} (validated {stored.result_code})"[:255],
                raw_confirmation=payment.raw,
            )
        await uow.paybill.keep_for_review(payment, "PAYBILL_SUSPENSE", why, now=now)
        return True

    # --- reads for operators ---------------------------------------------------------------------

    async def runs(self, limit: int = 50) -> list[Any]:
        async with self._engine.connect() as conn:
            query = select(reconciliation_runs).order_by(reconciliation_runs.c.started_at.desc()).limit(limit)
            return list((await conn.execute(query)).all())

    async def items(
        self,
        run_id: str,
        *,
        item_class: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[Any]:
        """The items a run saw last (by item key)."""
        t = reconciliation_items
        query = select(t).where(t.c.last_run_id == _uuid(run_id)).order_by(t.c.item_key)
        if item_class:
            query = query.where(t.c.item_class == item_class)
        if after:
            query = query.where(t.c.item_key > after)
        if limit:
            query = query.limit(limit)
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def run_exists(self, run_id: str) -> bool:
        async with self._engine.connect() as conn:
            query = select(reconciliation_runs.c.id).where(reconciliation_runs.c.id == _uuid(run_id))
            return (await conn.execute(query)).first() is not None
