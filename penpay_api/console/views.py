"""What the pages show, made from the OpsService answers: plain values for the templates. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from penpay.common.v1 import money_pb2
from penpay.ops.v1 import ops_pb2 as pb
from penpay_api.console.charts import BarChart, ColumnChart, bar_chart, column_chart
from penpay_api.console.mask import mask_fields, mask_text

TERMINAL = frozenset({"COMPLETED", "FAILED", "REVERSED"})
ACTION_STATUS = {
    v.number: v.name.removeprefix("REVIEW_ACTION_STATUS_") for v in pb.ReviewActionStatus.DESCRIPTOR.values
}
ACTION_KIND = {
    v.number: v.name.removeprefix("REVIEW_ACTION_KIND_") for v in pb.ReviewActionKind.DESCRIPTOR.values
}
KIND_NUMBER = {name: number for number, name in ACTION_KIND.items()}
_MINOR = {"KES": 2, "USD": 2}


def money(value: money_pb2.Money | None) -> str:
    if value is None or not value.currency:
        return ""
    digits = _MINOR.get(value.currency, 2)
    units, cents = divmod(abs(value.amount_cents), 10**digits)
    sign = "-" if value.amount_cents < 0 else ""
    return f"{value.currency} {sign}{units:,}.{cents:0{digits}d}"


def cents(amount: int, currency: str) -> str:
    return money(money_pb2.Money(amount_cents=amount, currency=currency))


def when(stamp: Timestamp | None) -> datetime | None:
    if stamp is None or (stamp.seconds == 0 and stamp.nanos == 0):
        return None
    moment: datetime = stamp.ToDatetime().replace(microsecond=0)
    return moment


def age(since: datetime | None, now: datetime | None) -> str:
    """`since` to `now` (the server's answer time, never this process's clock) as 3d 4h, 5m 2s..."""
    if since is None or now is None:
        return ""
    seconds = max(0, int((now - since) / timedelta(seconds=1)))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {seconds}s"
    return f"{seconds}s"


@dataclass(frozen=True, slots=True)
class InFlight:
    type: str
    status: str
    count: int
    amount: str
    oldest_age: str


@dataclass(frozen=True, slots=True)
class Float:
    kind: str
    balance: str
    threshold: str
    low: bool


@dataclass(frozen=True, slots=True)
class Dashboard:
    generated_at: datetime | None
    in_flight: list[InFlight]
    in_flight_chart: BarChart
    completed_chart: ColumnChart
    completed: list[InFlight]
    needing_attention: int
    open_callback_reviews: int
    floats: list[Float]
    ledger_balanced: bool
    outbox_pending: int
    outbox_failed: int
    outbox_lag: str
    outbox_by_stream: dict[str, int]
    dead_letters: int
    dead_letter_streams: list[tuple[str, int]]


def dashboard(
    report: pb.GetReconciliationReportResponse,
    outbox: pb.GetOutboxStatsResponse,
    dead: pb.GetDeadLetterStatsResponse,
    thresholds: dict[str, tuple[str, int]],
) -> Dashboard:
    now = when(report.generated_at)
    rows = [
        InFlight(s.type, s.status, s.count, money(s.amount), age(when(s.oldest_created_at), now))
        for s in report.transactions
    ]
    in_flight = [r for r in rows if r.status not in TERMINAL]
    floats = []
    for total in report.account_totals:
        if total.kind not in thresholds:
            continue
        currency, limit = thresholds[total.kind]
        if total.balance.currency != currency:
            continue
        floats.append(
            Float(
                total.kind, money(total.balance), cents(limit, currency), total.balance.amount_cents < limit
            )
        )
    return Dashboard(
        generated_at=now,
        in_flight=in_flight,
        in_flight_chart=bar_chart([(f"{r.type} {r.status}", r.count) for r in in_flight]),
        completed_chart=column_chart(
            [
                (f"{start:%Y-%m-%d %H:%M} UTC: {h.count}", h.count)
                for h in report.completed_by_hour
                for start in [when(h.start) or datetime.min]
            ]
        ),
        completed=[r for r in rows if r.status in TERMINAL],
        needing_attention=report.transactions_needing_attention,
        open_callback_reviews=report.open_mpesa_callback_reviews,
        floats=floats,
        ledger_balanced=all(c.balanced for c in report.currency_totals),
        outbox_pending=outbox.pending,
        outbox_failed=outbox.pending_with_failed_attempts,
        outbox_lag=age(when(outbox.oldest_pending_occurred_at), now) if outbox.pending else "",
        outbox_by_stream=dict(sorted(outbox.pending_by_stream.items())),
        dead_letters=dead.total,
        dead_letter_streams=[(s.stream, s.count) for s in dead.streams],
    )


def action(a: pb.ReviewAction) -> dict[str, Any]:
    return {
        "id": a.action_id,
        "kind": ACTION_KIND.get(a.kind, str(a.kind)),
        "status": ACTION_STATUS.get(a.status, str(a.status)),
        "reason": a.reason,
        "evidence": str(a.deriv_transaction_id or "") or a.mpesa_receipt,
        "proposed_by": a.proposed_by,
        "proposed_at": when(a.proposed_at),
        "decided_by": a.decided_by,
        "decided_at": when(a.decided_at),
        "outcome": a.outcome,
    }


def match(m: pb.TransactionMatch) -> dict[str, Any]:
    return {
        "id": m.transaction_id,
        "type": m.type,
        "status": m.status,
        "amount": money(m.amount),
        "matched_on": m.matched_on,
        "phone": m.phone,
        "created_at": when(m.created_at),
    }


def story(item: pb.ReviewItem) -> dict[str, Any]:
    """One transaction with everything the API knows of it; personal data masked."""
    actions = [action(a) for a in item.review_actions]
    refund_running = item.status == "NEEDS_REVIEW" and any(
        a["kind"] == "REFUND" and a["status"] == "EXECUTED" for a in actions
    )
    return {
        "id": item.transaction_id,
        "user_id": item.user_id,
        "type": item.type,
        "status": item.status,
        "reason": item.reason,
        "amount": money(item.amount),
        "converted": money(item.converted_amount),
        "deriv_login_id": item.deriv_login_id,
        "created_at": when(item.created_at),
        "updated_at": when(item.updated_at),
        "version": item.version,
        "evidence": [
            {
                "kind": e.kind,
                "status": e.status,
                "fields": mask_fields(dict(e.fields)),
                "at": when(e.updated_at),
            }
            for e in item.evidence
        ],
        "steps": [
            {
                "step": s.step,
                "attempts": s.attempts,
                "started_at": when(s.started_at),
                "updated_at": when(s.updated_at),
                "detail": s.detail,
            }
            for s in item.saga_steps
        ],
        "answers": [
            {
                "source": p.source,
                "kind": p.kind,
                "status": p.status,
                "reason": p.reason,
                "detail": p.detail,
                "body": mask_text(p.body) if p.body else "",
                "at": when(p.received_at),
            }
            for p in item.provider_answers
        ],
        "ledger": [
            {
                "posting": line.posting_id,
                "description": line.description,
                "account": line.account_kind,
                "side": line.side,
                "amount": money(line.amount),
                "at": when(line.created_at),
                "reverses": line.reverses_posting_id,
            }
            for line in item.ledger_lines
        ],
        "audit": [
            {
                "id": r.id,
                "at": when(r.occurred_at),
                "actor": r.actor,
                "action": r.action,
                "details": mask_text(r.details_json),
            }
            for r in item.audit_records
        ],
        "actions": actions,
        "open_action": next((a for a in actions if a["status"] == "PROPOSED"), None),
        "possible": list(item.possible_actions),
        "in_motion": item.status not in TERMINAL and (item.status != "NEEDS_REVIEW" or refund_running),
    }
