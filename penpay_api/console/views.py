"""What the pages show, made from the OpsService answers: plain values for the templates. Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from application.reconciliation.export import csv_cell
from application.reconciliation.rules import CLASSES, ItemClass
from penpay.common.v1 import money_pb2
from penpay.ops.v1 import ops_pb2 as pb
from penpay_api.console.charts import BarChart, ColumnChart, bar_chart, column_chart
from penpay_api.console.mask import mask_fields, mask_phone, mask_text
from persistence.auditor_store import AUDIT_CHECKS as AUDIT_CHECKS  # the pages' filter

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
class ProviderBalance:
    """The provider's side of a float as the auditor's latest verdict on it saw it."""

    status: str  # the verdict: OK, FAIL or SKIPPED
    balance: str  # "" when the auditor had no figure (SKIPPED)
    seen_at: datetime | None
    difference: str  # the ledger's float at that moment minus the provider's balance
    summary: str

    @property
    def failed(self) -> bool:
        return self.status == "FAIL"


@dataclass(frozen=True, slots=True)
class Float:
    kind: str
    balance: str
    threshold: str
    low: bool
    provider: ProviderBalance | None = None  # None until the auditor has looked


# Which auditor check compares which float with its provider (workers/auditor.py).
FLOAT_CHECKS = {"DERIV_AGENT_FLOAT": "float_deriv", "MPESA_FLOAT": "float_mpesa"}


def _moment(text: object) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    # Shown like the API's timestamps: naive UTC, whole seconds.
    return moment.replace(tzinfo=None, microsecond=0) - (moment.utcoffset() or timedelta(0))


def provider_balance(v: pb.AuditorVerdict, currency: str) -> ProviderBalance:
    """The figures of a float verdict: the provider's balance, when it was seen (Daraja's answer for
    M-Pesa, the auditor's run for Deriv, which asks the gateway then) and the difference."""
    try:
        details = json.loads(v.details_json) if v.details_json else {}
    except ValueError:
        details = {}
    details = details if isinstance(details, dict) else {}
    currency = str(details.get("currency") or currency)
    provider, difference = details.get("provider_cents"), details.get("difference_cents")
    seen = _moment(details["answered_at"]) if "answered_at" in details else when(v.checked_at)
    return ProviderBalance(
        status=v.status,
        balance=cents(int(provider), currency) if isinstance(provider, int) else "",
        seen_at=seen,
        difference=cents(int(difference), currency) if isinstance(difference, int) else "",
        summary=mask_phone(v.summary),
    )


@dataclass(frozen=True, slots=True)
class Dashboard:
    generated_at: datetime | None
    in_flight: list[InFlight]
    in_flight_chart: BarChart
    completed_chart: ColumnChart
    in_flight_hours_chart: ColumnChart
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
    verdicts: list[dict[str, Any]]
    auditor_failing: bool
    last_run: dict[str, Any] | None


def dashboard(
    report: pb.GetReconciliationReportResponse,
    outbox: pb.GetOutboxStatsResponse,
    dead: pb.GetDeadLetterStatsResponse,
    thresholds: dict[str, tuple[str, int]],
    audit: pb.GetAuditorVerdictsResponse | None = None,
    runs: pb.ListReconciliationRunsResponse | None = None,
) -> Dashboard:
    now = when(report.generated_at)
    rows = [
        InFlight(s.type, s.status, s.count, money(s.amount), age(when(s.oldest_created_at), now))
        for s in report.transactions
    ]
    in_flight = [r for r in rows if r.status not in TERMINAL]
    latest: dict[str, pb.AuditorVerdict] = {}
    for v in audit.verdicts if audit else ():  # newest first (the API's order)
        latest.setdefault(v.check, v)
    floats = []
    for total in report.account_totals:
        if total.kind not in thresholds:
            continue
        currency, limit = thresholds[total.kind]
        if total.balance.currency != currency:
            continue
        check = latest.get(FLOAT_CHECKS.get(total.kind, ""))
        floats.append(
            Float(
                total.kind,
                money(total.balance),
                cents(limit, currency),
                total.balance.amount_cents < limit,
                provider_balance(check, currency) if check is not None else None,
            )
        )
    return Dashboard(
        generated_at=now,
        in_flight=in_flight,
        in_flight_chart=bar_chart([(f"{r.type} {r.status}", r.count) for r in in_flight]),
        completed_chart=column_chart(hourly_columns(report.completed_by_hour)),
        in_flight_hours_chart=column_chart(hourly_columns(report.in_flight_by_hour)),
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
        verdicts=sorted((verdict(v) for v in audit.verdicts), key=lambda v: str(v["check"])) if audit else [],
        auditor_failing=bool(audit and audit.failing),
        last_run=recon_run(runs.runs[0]) if runs and runs.runs else None,
    )


def hourly_columns(hours: Any) -> list[tuple[str, int]]:
    """One column per HourlyCount, titled with the hour's start and its count."""
    return [
        (f"{start:%Y-%m-%d %H:%M} UTC: {h.count}", h.count)
        for h in hours
        for start in [when(h.start) or datetime.min]
    ]


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


# -- the auditor, reconciliation and paybill suspense ----------------------------------------

ITEM_CLASSES = tuple(c.value for c in ItemClass)
# What each kind of review action does, beside its radio button (the API decides which are offered).
ACTION_HINT = {
    "RESOLVE_COMPLETED": "the money went through: complete on the provider's evidence",
    "REFUND": "give the customer's KES back by B2C",
    "FAIL": "end as failed: only where no money moved (the provider is asked)",
    "RETRY": "run the stuck step again under its own ids",
}


def verdict(v: pb.AuditorVerdict) -> dict[str, Any]:
    return {
        "run_id": v.run_id,
        "check": v.check,
        "status": v.status,
        "summary": mask_phone(v.summary),
        "details": mask_text(v.details_json) if v.details_json else "",
        "checked_at": when(v.checked_at),
    }


def audit_runs(answer: pb.GetAuditorVerdictsResponse) -> list[dict[str, Any]]:
    """The verdicts grouped by auditor run, newest run first (the API's order)."""
    runs: dict[str, dict[str, Any]] = {}
    for v in answer.verdicts:
        run = runs.setdefault(
            v.run_id, {"run_id": v.run_id, "checked_at": when(v.checked_at), "verdicts": []}
        )
        run["verdicts"].append(verdict(v))
    for run in runs.values():
        run["verdicts"].sort(key=lambda one: one["check"])
        run["failing"] = any(one["status"] == "FAIL" for one in run["verdicts"])
    return list(runs.values())


def recon_run(r: pb.ReconciliationRun) -> dict[str, Any]:
    return {
        "id": r.run_id,
        "trigger": r.trigger,
        "window_from": when(r.window_from),
        "window_to": when(r.window_to),
        "status": r.status,
        "error": mask_phone(r.error),
        "counts": sorted(r.counts.items()),
        "total": sum(r.counts.values()),
        "unexplained": r.unexplained,
        "started_at": when(r.started_at),
        "finished_at": when(r.finished_at),
    }


def recon_item(i: pb.ReconciliationItem) -> dict[str, Any]:
    return {
        "key": i.item_key,
        "source": i.source,
        "item_class": i.item_class,
        # Nothing for a person to do (matched, awaiting the provider, ...): the rules say which.
        "explained": i.item_class in ITEM_CLASSES and CLASSES[ItemClass(i.item_class)].explained,
        "provider_ref": i.provider_ref,
        "transaction_id": i.transaction_id,
        "provider_amount": money(i.provider_amount) if i.HasField("provider_amount") else "",
        "penpay_amount": money(i.penpay_amount) if i.HasField("penpay_amount") else "",
        "occurred_at": when(i.occurred_at),
        "detail": mask_phone(i.detail),
        "review_status": i.review_status,
        "suspense_posting_id": i.suspense_posting_id,
        "resolved_by": i.resolved_by,
        "resolution": mask_phone(i.resolution),
        "write_off_proposed_by": i.write_off_proposed_by,
    }


def csv_row(i: pb.ReconciliationItem) -> list[str]:
    """One item as a CSV row: amounts as integer minor units, text made safe, phone numbers masked."""

    def amount(value: money_pb2.Money, present: bool) -> list[str]:
        return [str(value.amount_cents), value.currency] if present else ["", ""]

    occurred = when(i.occurred_at)
    return [
        csv_cell(i.item_key),
        csv_cell(i.source),
        csv_cell(i.item_class),
        csv_cell(i.provider_ref),
        csv_cell(i.transaction_id),
        *amount(i.provider_amount, i.HasField("provider_amount")),
        *amount(i.penpay_amount, i.HasField("penpay_amount")),
        occurred.isoformat() if occurred else "",
        csv_cell(i.review_status),
        csv_cell(i.suspense_posting_id),
        csv_cell(mask_phone(i.detail)),
    ]


def suspense_item(i: pb.PaybillSuspenseItem) -> dict[str, Any]:
    return {
        "trans_id": i.trans_id,
        "amount": money(i.amount),
        # What the customer typed as the account number is often their phone number.
        "bill_ref": mask_phone(i.bill_ref),
        "msisdn": mask_phone(i.msisdn_shown),
        "reason": i.reason,
        "proposed_user_id": i.proposed_user_id,
        "proposed_by": i.proposed_by,
        "refund_status": i.refund_status,
        "refund_proposed_by": i.refund_proposed_by,
    }


def kyc_attestation(a: pb.KycAttestation) -> dict[str, Any]:
    """An attestation as the API answered it (masked in the list, whole only when revealed)."""
    i = a.identity
    return {
        "id": a.attestation_id,
        "user_id": a.user_id,
        "deriv_login_id": a.deriv_login_id,
        "status": a.status,
        "name": f"{i.first_name} {i.last_name}".strip(),
        "date_of_birth": i.date_of_birth,
        "residence": i.residence.upper(),
        "citizen": i.citizen.upper(),
        "evidence": a.evidence,
        "acceptable": a.acceptable,
        "proposed_by": a.proposed_by,
        "proposed_at": when(a.proposed_at),
    }
