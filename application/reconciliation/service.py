"""A reconciliation run: read each provider's records of a window, compare them with PenPay's evidence and
ledger (rules.classify), store every item once, book money nobody at PenPay knows of to SUSPENSE.

A provider read that fails (a pull answered with HTTP 200 and 1001 among them) fails the run with the
alert `reconciliation_read_failed`: it is never taken for "nothing to import", and no cursor moves.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from application.alerts import raise_alert
from application.payments.lost_push import push_reference
from application.reconciliation import ports
from application.reconciliation.ports import (
    Evidence,
    Item,
    Payout,
    PayoutCheck,
    ProviderReadFailed,
    ProviderRecord,
)
from application.reconciliation.rules import (
    CLASSES,
    Amount,
    Comparison,
    ItemClass,
    classify,
    classify_float,
    held_in_suspense,
    sum_balances,
)
from domain.payments.paybill import masked, visible_digits_agree
from domain.shared.ids import TransactionId

READ_FAILED_ALERT = "reconciliation_read_failed"
PAID_STK = ("CONFIRMED", "SUCCEEDED")  # MpesaRequest statuses of a payment PenPay holds as made
UNEXPLAINED_ALERT = "reconciliation_unexplained"
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Deriv REST wallet statuses: the money moved / not yet / never
MOVED_STATUSES = ("complete", "reverted")
OPEN_STATUSES = ("pending", "processing", "requested")
# Records a little outside the window are read too, so that a record and its evidence stamped on
# either side of the window's edge still find each other.
EDGE = timedelta(minutes=10)


def transaction_hint(text: str) -> str | None:
    """The PenPay transaction id a provider record's description names, if any: the last id in it (Deriv
    writes its own transaction reference first, then the note PenPay sent)."""
    found = _UUID.findall(text)
    return found[-1].lower() if found else None


@dataclass(frozen=True)
class RunReport:
    run_id: str
    status: str
    counts: dict[str, int]
    unexplained: int
    error: str | None = None


Progress = Callable[[str], None]


class Reconciler:
    def __init__(
        self,
        reads: ports.ProviderReads,
        store: ports.ReconciliationStore,
        *,
        b2c_grace: timedelta = timedelta(minutes=30),
    ) -> None:
        self._reads = reads
        self._store = store
        self._b2c_grace = b2c_grace

    async def run(
        self,
        start: datetime,
        end: datetime,
        *,
        now: datetime,
        trigger: str = "cli",
        progress: Progress | None = None,
    ) -> RunReport:
        if end <= start:
            raise ValueError("the window must end after it starts")
        run_id = await self._store.start_run(trigger, start, end, now)
        items: list[Item] = []
        steps: list[tuple[str, Callable[[], object]]] = [
            (ports.MPESA_C2B, lambda: self._mpesa_c2b(start, end)),
            (ports.DERIV_STATEMENT, lambda: self._deriv_statement(start, end)),
            (ports.MPESA_B2C, lambda: self._mpesa_b2c(start, end, now)),
            (ports.MPESA_FLOAT, lambda: self._float(ports.MPESA_FLOAT, now)),
            (ports.DERIV_FLOAT, lambda: self._float(ports.DERIV_FLOAT, now)),
        ]
        try:
            for source, step in steps:
                found = await step()  # type: ignore[misc]
                items.extend(found)
                for item in found:
                    await self._store.record_item(run_id, item, now)
                if progress is not None:
                    progress(source)
        except ProviderReadFailed as failed:
            raise_alert(
                READ_FAILED_ALERT, f"reconciliation run failed: {failed}", run_id=run_id, source=failed.source
            )
            counts = _counts(items)
            await self._store.finish_run(run_id, "FAILED", counts, _unexplained(items), str(failed), now)
            return RunReport(run_id, "FAILED", counts, _unexplained(items), str(failed))
        counts = _counts(items)
        unexplained = _unexplained(items)
        for source in ports.SOURCES:
            await self._store.advance_cursor(source, end, now)
        await self._store.finish_run(run_id, "SUCCEEDED", counts, unexplained, None, now)
        if unexplained:
            raise_alert(UNEXPLAINED_ALERT, f"{unexplained} unexplained differences", run_id=run_id)
        return RunReport(run_id, "SUCCEEDED", counts, unexplained)

    # --- M-Pesa C2B: Pull Transactions against MpesaRequest and the M-Pesa float --------------------

    async def _mpesa_c2b(self, start: datetime, end: datetime) -> list[Item]:
        pulled = await self._reads.pulled_c2b(start - EDGE, end + EDGE)
        copies = Counter(p.ref for p in pulled)
        pushes = await self._store.stk_evidence(start - EDGE, end + EDGE)
        paid = [e for e in pushes if e.status in PAID_STK]
        evidence = {e.provider_ref: e for e in paid if e.provider_ref}
        # A payment PenPay holds no receipt for (confirmed by STK Query alone, or its callback still on
        # the way) is found by the account reference PenPay sent (its transaction id's tail) and amount.
        by_reference = {
            (push_reference(TransactionId.from_str(e.transaction_id)), e.amount): e
            for e in pushes
            if not (e.provider_ref and e.status in PAID_STK)
        }
        in_window = [p for p in pulled if start <= p.occurred_at < end]
        missing = [p.ref for p in in_window if p.ref not in evidence]
        evidence.update(await self._store.stk_evidence_by_receipt(missing))
        # A paybill payment's TransID is the receipt of the DEPOSIT it became; one PenPay's confirmation
        # endpoint put in suspense has no transaction: its c2b_payments row explains it.
        held = {
            ref: h
            for ref, h in (
                await self._store.paybill_payments([r for r in missing if r not in evidence])
            ).items()
            if held_in_suspense(h.status)
        }
        # What came into the float for each payment: a deposit refunded by B2C later has a net movement
        # of nil, yet M-Pesa did receive the customer's payment (the refund is reconciled as a payout).
        ledger = await self._store.float_movement(
            [e.transaction_id for e in paid] + [e.transaction_id for e in evidence.values()],
            "MPESA_FLOAT",
            into_float_only=True,
        )
        items: list[Item] = []
        seen: set[str] = set()
        for record in _unique(in_window):
            ev = evidence.get(record.ref)
            suspended = held.get(record.ref) if ev is None else None
            if ev is None and suspended is None:
                ev = by_reference.pop((record.reference.upper(), record.amount), None)
            if ev is not None:
                seen.add(ev.transaction_id)
            if suspended is not None:
                comparison = Comparison(
                    provider=record.amount,
                    evidence=suspended.amount,
                    ledger=suspended.amount,
                    provider_copies=copies[record.ref],
                    in_suspense=True,
                    party_agrees=visible_digits_agree(record.party, suspended.msisdn_shown),
                )
                item_class = classify(comparison)
            elif ev is not None and ev.status not in PAID_STK:
                # paid at M-Pesa, not yet confirmed at PenPay: the saga will book it; never suspense
                item_class = ItemClass.AWAITING_PROVIDER
            else:
                comparison = Comparison(
                    provider=record.amount,
                    evidence=ev.amount if ev else None,
                    ledger=ledger.get(ev.transaction_id) if ev else None,
                    provider_copies=copies[record.ref],
                    party_agrees=visible_digits_agree(record.party, ev.party) if ev else True,
                )
                item_class = classify(comparison)
            held_party = suspended.msisdn_shown if suspended else ev.party if ev else ""
            items.append(
                _item(
                    ports.MPESA_C2B,
                    f"c2b:{record.ref}",
                    item_class,
                    record,
                    ev,
                    float_kind="MPESA_FLOAT",
                    held_party=held_party,
                )
            )
        pulled_refs = {p.ref for p in pulled}
        for ev in paid:
            if (
                start <= ev.created_at < end
                and ev.transaction_id not in seen
                and ev.provider_ref not in pulled_refs
            ):
                comparison = Comparison(provider=None, evidence=ev.amount, ledger=None)
                key = f"c2b:{ev.provider_ref or ev.transaction_id}"
                items.append(_item(ports.MPESA_C2B, key, classify(comparison), None, ev))
        return items

    # --- Deriv: the agent's statement against DerivTransfer / DerivWithdrawal and the agent float --

    async def _deriv_statement(self, start: datetime, end: datetime) -> list[Item]:
        read = await self._reads.deriv_statement(start - EDGE, end + EDGE)
        lines = [ln for ln in read if ln.status in MOVED_STATUSES]
        unmoved = [ln for ln in read if ln.status not in MOVED_STATUSES and start <= ln.occurred_at < end]
        evidence = {e.provider_ref: e for e in await self._store.deriv_evidence(start - EDGE, end + EDGE)}
        evidence.update(
            await self._store.deriv_evidence_by_ref([ln.ref for ln in lines if ln.ref not in evidence])
        )
        hints = sorted({ln.transaction_hint for ln in read if ln.transaction_hint})
        known = await self._store.known_transactions(hints)
        # Deriv gives a withdrawal's caller the client's transaction id; the agent's own line (another
        # id) names our operation in its description: matched by transaction and direction.
        by_operation = {(e.transaction_id, e.kind == "withdrawal"): e for e in evidence.values()}
        for e in await self._store.deriv_evidence_of([h for h in hints if h in known]):
            by_operation.setdefault((e.transaction_id, e.kind == "withdrawal"), e)

        def evidence_of(line: ProviderRecord) -> Evidence | None:
            found = evidence.get(line.ref)
            if found is None and line.transaction_hint:
                found = by_operation.get((line.transaction_hint, line.credit))
            return found

        by_tx: dict[str, list[ProviderRecord]] = defaultdict(list)
        for line in lines:
            ev = evidence_of(line)
            tx = ev.transaction_id if ev else line.transaction_hint
            if tx:
                by_tx[tx].append(line)
        ledger = await self._store.float_movement(list(by_tx), "DERIV_AGENT_FLOAT")
        items: list[Item] = []
        matched: set[tuple[str, str]] = set()
        for line in lines:
            ev = evidence_of(line)
            if ev is not None:
                matched.add((ev.transaction_id, ev.kind))
            if not start <= line.occurred_at < end:
                continue
            tx = ev.transaction_id if ev else line.transaction_hint
            operation = by_tx.get(tx or "", [line])
            # the same operation moved twice: two lines naming it, in the same direction
            same = [o for o in operation if o.credit == line.credit]
            net = sum(o.amount.cents if o.credit else -o.amount.cents for o in operation)
            booked = ledger.get(tx) if tx else None
            ledger_ok = booked is not None and booked.cents == net
            # A line naming one of our transactions that no evidence row holds (the transfer back of a
            # reversed withdrawal: its id is in the gateway's journal only) is PenPay's when the
            # transaction's postings moved the float exactly as its lines did.
            vouched = ev is None and tx in known and ledger_ok and len(same) == 1
            comparison = Comparison(
                provider=line.amount,
                evidence=ev.amount if ev else line.amount if vouched else None,
                ledger=line.amount if ledger_ok else booked,
                provider_copies=len(same),
                names_penpay_transaction=tx in known if tx else False,
            )
            item_class = classify(comparison)
            if ev is not None and len(same) > 1:
                # the line the evidence names is the one PenPay made; the others are the repeats
                ours = ev.provider_ref
                first = min(same, key=lambda o: (o.ref != ours, o.occurred_at, o.ref))
                item_class = ItemClass.MATCHED if first.ref == line.ref else ItemClass.DUPLICATE_AT_PROVIDER
            if line.conflict:
                # Deriv's two views of one transaction disagree: which amount moved is for a person
                item_class = ItemClass.AMOUNT_MISMATCH
            items.append(
                _item(
                    ports.DERIV_STATEMENT,
                    f"deriv:{line.ref}",
                    item_class,
                    line,
                    ev,
                    tx=tx if tx in known else None,
                    float_kind="DERIV_AGENT_FLOAT",
                )
            )
        for record in unmoved:
            items.append(self._unmoved(record, by_operation, matched))
            ev = by_operation.get((record.transaction_hint or "", record.credit))
            if ev is not None:
                matched.add((ev.transaction_id, ev.kind))  # reported by the record just made
        for ev in evidence.values():
            if start <= ev.created_at < end and (ev.transaction_id, ev.kind) not in matched:
                comparison = Comparison(provider=None, evidence=ev.amount, ledger=None)
                items.append(
                    _item(ports.DERIV_STATEMENT, f"deriv:{ev.provider_ref}", classify(comparison), None, ev)
                )
        return items

    @staticmethod
    def _unmoved(
        record: ProviderRecord,
        by_operation: dict[tuple[str, bool], Evidence],
        matched: set[tuple[str, str]],
    ) -> Item:
        """A Deriv operation that has not moved money (pending) or never will (failed, rejected,
        cancelled). Pending: the next run looks again. Otherwise it agrees with PenPay unless PenPay
        holds that operation as executed with no line of Deriv's saying so."""
        ev = by_operation.get((record.transaction_hint or "", record.credit))
        if record.status in OPEN_STATUSES:
            item_class = ItemClass.AWAITING_PROVIDER
        elif ev is not None and (ev.transaction_id, ev.kind) not in matched:
            item_class = ItemClass.MISSING_AT_PROVIDER
        else:
            item_class = ItemClass.MATCHED
        item = _item(ports.DERIV_STATEMENT, f"deriv:{record.ref}", item_class, record, ev)
        return dataclasses.replace(
            item,
            detail=f"{item.detail}: no money moved"[:500],
            transaction_id=ev.transaction_id if ev else item.transaction_id,
            float_kind=None,
        )

    # --- M-Pesa B2C: every payout of the window ---------------------------------------------------

    async def _mpesa_b2c(self, start: datetime, end: datetime, now: datetime) -> list[Item]:
        """Not confirmed yet: Transaction Status by OriginatorConversationID (the inbox settles it).
        Confirmed: M-Pesa's result against the evidence and the ledger, and Transaction Status about
        its receipt once (a payout M-Pesa does not have is found so); the next runs keep the answer."""
        items = []
        for ev in await self._store.unconfirmed_b2c(start, end):
            assert ev.provider_ref is not None
            await self._reads.ask_b2c_status(ev.provider_ref)
            overdue = now - ev.created_at > self._b2c_grace
            comparison = Comparison(
                provider=None, evidence=ev.amount, ledger=None, awaiting=True, overdue=overdue
            )
            item = _item(ports.MPESA_B2C, f"b2c:{ev.provider_ref}", classify(comparison), None, ev)
            items.append(item)
        return items + await self._confirmed_payouts(start, end)

    async def _confirmed_payouts(self, start: datetime, end: datetime) -> list[Item]:
        payouts = await self._store.confirmed_payouts(start, end)
        keys = {p.originator_conversation_id: f"b2c:{p.originator_conversation_id}" for p in payouts}
        # A confirmed payout's item names its receipt (provider_ref): one whose item names it in a
        # class other than AWAITING_PROVIDER was checked by Transaction Status in an earlier run, and
        # is not asked again (an item of the payout while it was unconfirmed names its
        # OriginatorConversationID: its MISSING_AT_PROVIDER came from the grace, not from M-Pesa).
        states = await self._store.item_states(list(keys.values()))
        before = {
            key: item_class
            for p in payouts
            if (key := keys[p.originator_conversation_id]) in states
            and states[key][1] == _payout_ref(p)
            and (item_class := states[key][0]) != ItemClass.AWAITING_PROVIDER.value
        }
        unchecked = [p for p in payouts if keys[p.originator_conversation_id] not in before]
        checks = await self._reads.check_payouts(unchecked) if unchecked else {}
        paid_out = await self._store.float_movement(
            [p.transaction_id for p in payouts], "MPESA_FLOAT", out_of_float_only=True
        )
        items = []
        for payout in payouts:
            key = keys[payout.originator_conversation_id]
            record = self._reads.payout_record(payout)
            ev = Evidence(
                transaction_id=payout.transaction_id,
                provider_ref=payout.originator_conversation_id,
                amount=payout.amount,
                status="CONFIRMED",
                created_at=payout.created_at,
                party=payout.phone,
            )
            check = checks.get(payout.originator_conversation_id)
            item_class = self._payout_class(payout, record, check, before.get(key), paid_out)
            if check is not None:
                note = check.detail
            elif key in before:
                note = "Transaction Status checked in an earlier run"
            else:
                note = ""
            item = _item(ports.MPESA_B2C, key, item_class, record, ev, held_party=payout.phone)
            items.append(
                dataclasses.replace(
                    item,
                    provider_ref=_payout_ref(payout),
                    detail=f"{item.detail}; {note}"[:500] if note else item.detail,
                    credit=False,
                )
            )
        return items

    @staticmethod
    def _payout_class(
        payout: Payout,
        record: ProviderRecord | None,
        check: PayoutCheck | None,
        previous: str | None,
        paid_out: dict[str, Amount],
    ) -> ItemClass:
        """M-Pesa's result against the evidence and the float's outflow; then what Transaction Status
        said this run (`check`), or an earlier run (`previous`, when it was not asked again)."""
        provider = record.amount if record else None
        if provider is None and check is not None and check.confirmed:
            provider = payout.amount  # the inbox takes a status answer only with the payout's amount
        if check is not None and check.party_differs:
            return ItemClass.PARTY_MISMATCH
        if check is not None and check.confirmed is False:
            return ItemClass.MISSING_AT_PROVIDER
        if check is None and previous == ItemClass.MISSING_AT_PROVIDER.value:
            return ItemClass.MISSING_AT_PROVIDER  # what Transaction Status said stands
        if provider is None:
            if check is None and previous not in (None, ItemClass.AWAITING_PROVIDER.value):
                return ItemClass(previous)
            return ItemClass.AWAITING_PROVIDER  # no word of M-Pesa's on it yet: asked, looked at again
        item_class = classify(
            Comparison(
                provider=provider,
                evidence=payout.amount,
                ledger=paid_out.get(payout.transaction_id),
                party_agrees=visible_digits_agree(record.party, payout.phone) if record else True,
            )
        )
        if check is not None and check.confirmed is None and item_class is ItemClass.MATCHED:
            return ItemClass.AWAITING_PROVIDER
        return item_class

    # --- floats: the provider's balance against the ledger -----------------------------------------

    async def _float(self, source: str, now: datetime) -> list[Item]:
        parts = ""
        if source == ports.MPESA_FLOAT:
            # One ledger float, held at Safaricom across several shortcodes: their balances summed.
            balances = await self._reads.mpesa_balance()
            provider, kind = sum_balances(balances), "MPESA_FLOAT"
            parts = " (" + ", ".join(f"shortcode {code} {a.cents}" for code, a in balances.items()) + ")"
        else:
            provider, kind = await self._reads.deriv_balance(), "DERIV_AGENT_FLOAT"
        booked = await self._store.float_balance(kind, provider.currency)
        item_class = classify_float(provider, booked)
        detail = (
            f"{kind}: provider {provider.cents} {provider.currency}{parts}, "
            f"ledger {booked.cents} {booked.currency}"
        )
        return [
            Item(
                key=f"float:{source}:{now.isoformat()}",
                source=source,
                item_class=item_class,
                detail=detail,
                provider_amount=provider,
                penpay_amount=booked,
                occurred_at=now,
            )
        ]


def _payout_ref(payout: Payout) -> str:
    return payout.receipt or payout.originator_conversation_id


def _unique(records: list[ProviderRecord]) -> list[ProviderRecord]:
    seen: set[str] = set()
    out = []
    for r in records:
        if r.ref not in seen:
            seen.add(r.ref)
            out.append(r)
    return out


def _item(
    source: str,
    key: str,
    item_class: ItemClass,
    record: ProviderRecord | None,
    ev: Evidence | None,
    *,
    tx: str | None = None,
    float_kind: str | None = None,
    held_party: str = "",
) -> Item:
    parts = [item_class.value.lower().replace("_", " ")]
    if item_class is ItemClass.PARTY_MISMATCH:
        # masked forms only: the detail is read by staff and exported
        shown = masked(record.party if record else "") or "none"
        parts.append(f"party shown {shown}, PenPay holds {masked(held_party) or 'none'}")
    if record is not None:
        parts.append(f"provider {record.ref} {record.amount.cents} {record.amount.currency}")
        if record.reference:
            parts.append(f"ref {record.reference[:80]}")
        if record.status != "complete":
            parts.append(f"Deriv status {record.status}")
        if record.conflict:
            parts.append(record.conflict)
    if ev is not None:
        parts.append(f"evidence {ev.transaction_id} {ev.status} {ev.amount.cents} {ev.amount.currency}")
    if item_class is ItemClass.HELD_IN_SUSPENSE:
        parts.append("held in paybill suspense since it arrived")
    return Item(
        key=key,
        source=source,
        item_class=item_class,
        detail="; ".join(parts)[:500],
        provider_ref=record.ref if record else ev.provider_ref if ev else None,
        transaction_id=ev.transaction_id if ev else tx,
        provider_amount=record.amount if record else None,
        penpay_amount=ev.amount if ev else None,
        occurred_at=record.occurred_at if record else ev.created_at if ev else None,
        credit=record.credit if record else True,
        float_kind=float_kind if CLASSES[item_class].suspense else None,
        reference=record.reference if record else "",
        party=record.party if record else "",
        account=record.account if record else "",
    )


def _counts(items: list[Item]) -> dict[str, int]:
    return dict(Counter(i.item_class.value for i in items))


def _unexplained(items: list[Item]) -> int:
    return sum(1 for i in items if not CLASSES[i.item_class].explained)
