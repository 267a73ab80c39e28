"""The soak's verdict: the consistency checker and the simulators' books, read once the faults
have stopped and the sweeper has had its time, turned into the invariants the soak must keep.

  money lost          0   no transaction whose money left someone without arriving or being
                          refunded (the checker's codes in LOST_CODES), and no float difference
                          between the ledger and the simulators that in-flight work does not explain
  payments made twice 0   no PenPay operation executed twice on Deriv, no withdrawal paid twice by
                          B2C, no deposit charged twice by STK push (counted from the books, beside
                          the checker's PAID_TWICE)
  ledger sums         0   per currency, debits - credits
  (reported, not judged: what the system accounts hold — FX at the reference rate, the FX spread
  earned, fees, suspense (only money nobody explains), the capital put into the floats — so a
  spread or suspense balance nobody expects is seen)
  unresolved          0   every transaction terminal or NEEDS_REVIEW (each review listed with its reason)
  audit chain             verified from the first row to the last
  violations          0   every other rule of persistence.consistency
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from persistence.consistency.books import SimulatorBooks
from persistence.consistency.report import Code, ConsistencyReport

# Money that left a user, a float or a simulator account and neither arrived nor came back.
LOST_CODES = frozenset(
    {
        Code.FAILED_WITH_MONEY,
        Code.REVERSAL_WITHOUT_REFUND,
        Code.REFUND_NOT_EXECUTED,
        Code.DERIV_TRANSFER_MISSING,
        Code.DERIV_WITHDRAWAL_MISSING,
        Code.B2C_NOT_PAID,
        Code.DERIV_UNBOOKED,
        Code.STK_CHARGE_UNKNOWN,
        Code.STK_CHARGE_UNBOOKED,
        Code.B2C_PAYOUT_UNKNOWN,
        Code.B2C_PAID_NOT_BOOKED,
        Code.REVERSED_BUT_DELIVERED,
        Code.FLOAT_MOVEMENT_MISMATCH,
        Code.DERIV_FLOAT_MISMATCH,
        Code.MPESA_FLOAT_MISMATCH,
    }
)
# What the report lists beside the ledger sums: where conversion, spread, fees, unexplained money and
# the house's own funding of the floats sit (funding is CAPITAL, so SUSPENSE shows only the unexplained).
SYSTEM_ACCOUNT_KINDS = ("FX", "FX_SPREAD", "FEES", "SUSPENSE", "CAPITAL", "RECONCILIATION_WRITE_OFF")
# A soak in which the API refused most of the traffic proved nothing: it fails.
MIN_ACCEPTED_SHARE = 0.5


@dataclass
class SoakReport:
    seed: int
    schedule_fingerprint: str
    consistency: ConsistencyReport
    audit_rows: int
    audit_problems: list[str]
    paid_twice: list[str]  # "deriv <operation id> x2", "b2c <tx> x2", "stk <tx> x2"
    scenario_outcomes: dict[str, dict[str, int]]
    # "<status>: <failure reason>" -> count, for every transaction that did not complete
    failure_reasons: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    driver: dict[str, Any] = field(default_factory=dict)
    faults: list[dict[str, Any]] = field(default_factory=list)
    crashes: dict[str, int] = field(default_factory=dict)
    rule_counters: dict[str, Any] = field(default_factory=dict)
    settled: bool = True
    # the scripted operator's work on the review queue (proving.chaos.operator); empty: not run
    review: dict[str, Any] = field(default_factory=dict)
    # `penpay reconcile run --json` over the soak's window: provider APIs only (never a control API)
    reconciliation: dict[str, Any] = field(default_factory=dict)

    # --- the invariants ------------------------------------------------------------------------

    @property
    def lost(self) -> list[Any]:
        return [v for v in self.consistency.violations if v.code in LOST_CODES]

    @property
    def unexplained_float_cents(self) -> dict[str, int]:
        return {f.currency: f.unexplained_cents for f in self.consistency.floats}

    @property
    def ledger_sums(self) -> dict[str, int]:
        return {
            currency: sums["debit_cents"] - sums["credit_cents"]
            for currency, sums in sorted(self.consistency.sums_by_currency.items())
        }

    @property
    def system_accounts(self) -> dict[str, int]:
        """Balances of the system accounts that are not floats, "<KIND> <CURRENCY>" -> minor units."""
        return {
            key: value
            for key, value in sorted(self.consistency.balances_by_kind.items())
            if key.split(" ")[0] in SYSTEM_ACCOUNT_KINDS
        }

    @property
    def failures(self) -> list[str]:
        """Each broken invariant, in words; empty when the soak passed."""
        broken = []
        if self.lost or any(self.unexplained_float_cents.values()):
            broken.append(f"money lost: {len(self.lost)} violations, floats {self.unexplained_float_cents}")
        if self.paid_twice:
            broken.append(f"payments made twice: {len(self.paid_twice)}")
        if any(self.ledger_sums.values()):
            broken.append(f"ledger does not sum to zero: {self.ledger_sums}")
        if self.consistency.unresolved:
            broken.append(f"unresolved transactions: {len(self.consistency.unresolved)}")
        if self.review and self.consistency.needs_review:
            broken.append(f"left under review by the scripted operator: {len(self.consistency.needs_review)}")
        if self.review and self.review.get("proposed") and not self.review.get("four_eyes_checked"):
            broken.append("the proposer's own approval was not refused (four-eyes)")
        if self.audit_problems:
            broken.append(f"audit chain broken: {len(self.audit_problems)} problems")
        others = [v for v in self.consistency.violations if v.code not in LOST_CODES]
        if others:
            broken.append(f"other violations: {len(others)} ({', '.join(sorted({v.code for v in others}))})")
        planned = int(self.driver.get("planned", 0))
        accepted = sum(n for key, n in self.driver.get("initiated", {}).items() if key.endswith(":OK"))
        if planned and accepted < planned * MIN_ACCEPTED_SHARE:
            broken.append(
                f"the traffic did not flow: {accepted} of {planned} transactions accepted by the API"
            )
        if planned and not self.consistency.counts_by_status.get("COMPLETED"):
            broken.append("no transaction completed")
        if len(self.consistency.books_checked) < 2:
            broken.append("the simulators' books were not both compared")
        if self.reconciliation and self.reconciliation.get("status") != "SUCCEEDED":
            broken.append(f"reconciliation with the providers failed: {self.reconciliation.get('error')}")
        return broken

    @property
    def ok(self) -> bool:
        return not self.failures

    # --- output ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "failures": self.failures,
            "seed": self.seed,
            "schedule_fingerprint": self.schedule_fingerprint,
            "timings_seconds": self.timings,
            "transactions_by_status": self.consistency.counts_by_type,
            "scenario_outcomes": self.scenario_outcomes,
            "money_lost": {
                "violations": [v.to_dict() for v in self.lost],
                "unexplained_float_cents": self.unexplained_float_cents,
            },
            "failure_reasons": self.failure_reasons,
            "paid_twice": self.paid_twice,
            "ledger_sums_cents": self.ledger_sums,
            "system_accounts_cents": self.system_accounts,
            "unresolved": [u.to_dict() for u in self.consistency.unresolved],
            "needs_review": [
                {"transaction_id": r.transaction_id, "reason": r.reason}
                for r in self.consistency.needs_review
            ],
            "audit": {"rows_checked": self.audit_rows, "problems": self.audit_problems},
            "review_by_operator": self.review,
            "settled_before_check": self.settled,
            "driver": self.driver,
            "faults": self.faults,
            "process_crashes": self.crashes,
            "simulator_rule_counters": self.rule_counters,
            "consistency": self.consistency.to_dict(),
            "reconciliation": self.reconciliation,
        }

    def render(self) -> str:
        c = self.consistency
        out = [f"PenPay chaos soak, seed {self.seed} (schedule {self.schedule_fingerprint})"]
        if self.timings:
            out.append("time: " + ", ".join(f"{k} {v:.0f}s" for k, v in self.timings.items()))
        if self.driver:
            out.append(
                f"traffic: {self.driver.get('planned', 0)} planned; initiated {self.driver.get('initiated')}"
            )
            out.append(f"  withdrawal confirmations {self.driver.get('withdrawal_confirmations')}")
            out.append(f"  client retries (same idempotency key) {self.driver.get('client_retries')}")
        if self.faults:
            kinds = Counter(f"{f['kind']} {f['target']}" for f in self.faults)
            failed = [f for f in self.faults if not _applied(f["outcome"])]
            listed = ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))
            out.append(f"faults injected: {len(self.faults)} ({listed})")
            for f in failed:
                out.append(f"  fault #{f['index']} {f['kind']} {f['target']}: {f['outcome']}")
        out.append(f"process crashes (exited by themselves, restarted): {self.crashes or 'none'}")
        out.append("")
        out.append("Transactions by final status:")
        for type_, counts in sorted(c.counts_by_type.items()):
            out.append(f"  {type_}: " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())))
        out.append("Final status by scenario:")
        for scenario, counts in sorted(self.scenario_outcomes.items()):
            out.append(f"  {scenario}: " + ", ".join(f"{s} {n}" for s, n in sorted(counts.items())))
        out.append("Why the others did not complete (status: reason):")
        out += [f"  {n:4d}  {reason}" for reason, n in self.failure_reasons.items()]
        out.append("")
        floats = ", ".join(f"{cur} {_cents(v)}" for cur, v in sorted(self.unexplained_float_cents.items()))
        out.append(f"money lost: {len(self.lost)} (unexplained float difference: {floats or 'n/a'})")
        for v in self.lost:
            out.append(f"  {v.code}: {v.message}")
        out.append(f"payments made twice: {len(self.paid_twice)}")
        out += [f"  {p}" for p in self.paid_twice]
        out.append(
            "ledger sums per currency (debits - credits): "
            + ", ".join(f"{cur} {_cents(v)}" for cur, v in self.ledger_sums.items())
        )
        out.append(
            "system accounts (FX at the reference rate, spread earned, fees, unexplained money held "
            "in suspense, capital funding the floats): "
            + (", ".join(f"{k} {_cents(v)}" for k, v in self.system_accounts.items()) or "none")
        )
        out.append(f"transactions left unresolved (outside NEEDS_REVIEW): {len(c.unresolved)}")
        for u in c.unresolved:
            out.append(f"  {u.transaction_id}: {u.type} {u.status} ({u.failure_reason or 'no reason'})")
        if self.review:
            r = self.review
            out.append(
                f"review queue (scripted operator, four-eyes): {r.get('reviewed', 0)} under review, "
                f"{r.get('rounds', 0)} rounds; proposed {r.get('proposed') or {}}, "
                f"executed {r.get('executed') or {}}, refused by the provider {r.get('refused') or {}}; "
                f"own approval refused: {'yes' if r.get('four_eyes_checked') else 'no'}"
            )
            pay = r.get("paybill_suspense") or {}
            out.append(
                f"paybill suspense (scripted operator, four-eyes): {pay.get('seen', 0)} in suspense; "
                f"assigned to the user who paid {pay.get('assigned', 0)} "
                f"(proposed {pay.get('proposed', 0)}); "
                f"left for a person {len(pay.get('left_for_a_person') or [])}"
                + ("; own approval refused: yes" if pay.get("four_eyes_checked") else "")
            )
            refunds = len(pay.get("refunds_proposed") or [])
            out.append(
                f"paybill refunds (M-Pesa Reversal, four-eyes): proposed {refunds}, "
                f"approvals {pay.get('refund_approvals', 0)}, refunded {len(pay.get('refunded') or [])}"
                + ("; own approval refused: yes" if pay.get("refund_four_eyes_checked") else "")
            )
            out += [f"  left: {why}" for why in pay.get("left_for_a_person") or []]
        out.append(f"NEEDS_REVIEW: {len(c.needs_review)}")
        for item in c.needs_review:
            out.append(f"  {item.transaction_id}: {item.reason or '(no reason recorded)'}")
        verdict = "verified" if not self.audit_problems else f"BROKEN ({len(self.audit_problems)} problems)"
        out.append(f"audit chain: {verdict}, {self.audit_rows} rows")
        out += [f"  {p}" for p in self.audit_problems[:20]]
        others = [v for v in c.violations if v.code not in LOST_CODES]
        out.append(f"other violations: {len(others)}")
        out += [f"  {v.code}: {v.message}" for v in others[:50]]
        out.append(f"simulator books compared: {', '.join(c.books_checked) or 'none'}")
        if self.reconciliation:
            r = self.reconciliation
            out.append(
                f"reconciliation with the providers' APIs: {r.get('status')}, "
                f"{r.get('unexplained')} unexplained {r.get('counts')}"
            )
            out += [
                f"  {i['item_class']} {i['item_key']}: {i['detail']}" for i in r.get("unexplained_items", [])
            ]
        out.append("")
        out.append("RESULT: PASS" if self.ok else "RESULT: FAIL: " + "; ".join(self.failures))
        return "\n".join(out)


def _applied(outcome: str) -> bool:
    return outcome == "applied" or outcome.startswith(("killed", "cut every"))


def _cents(value: int) -> str:
    sign = "-" if value < 0 else ""
    whole, part = divmod(abs(value), 100)
    return f"{sign}{whole:,}.{part:02d}"


def payments_made_twice(books: SimulatorBooks, stk_owner: dict[str, str]) -> list[str]:
    """From the simulators' own books: operations executed, paid or charged more than once."""
    twice: list[str] = []
    if books.deriv is not None:
        ops = Counter(t.operation_id for t in books.deriv.transfers if t.operation_id)
        twice += [f"deriv operation {op} executed x{n}" for op, n in sorted(ops.items()) if n > 1]
    if books.mpesa is not None:
        paid = Counter(b.transaction_id for b in books.mpesa.b2c if b.paid and b.transaction_id)
        twice += [f"b2c for withdrawal {tx} paid x{n}" for tx, n in sorted(paid.items()) if n > 1]
        charged = Counter(
            stk_owner[s.checkout_request_id]
            for s in books.mpesa.stk
            if s.charged and s.checkout_request_id in stk_owner
        )
        twice += [f"stk for deposit {tx} charged x{n}" for tx, n in sorted(charged.items()) if n > 1]
    return twice


async def build_report(
    database_url: str,
    *,
    seed: int,
    schedule_fingerprint: str,
    deriv_control: str,
    mpesa_control: str,
    deriv_opening_balance_cents: int | None,
    outcomes_of: dict[str, str],  # transaction id -> "<kind>:<scenario>"
) -> SoakReport:
    from sqlalchemy import select

    from persistence.audit import verify_chain
    from persistence.consistency.check import check_consistency
    from persistence.engine import create_engine
    from persistence.tables import mpesa_requests, transactions
    from proving.simulator_books import fetch_simulator_books

    books = await fetch_simulator_books(
        deriv_control_url=deriv_control,
        mpesa_control_url=mpesa_control,
        deriv_opening_balance_cents=deriv_opening_balance_cents,
    )
    assert books is not None
    engine = create_engine(database_url, pool_size=2)
    try:
        # stale_after 0: every transaction not terminal and not in review counts as unresolved.
        consistency = await check_consistency(
            engine, now=datetime.now(UTC), stale_after=timedelta(0), books=books
        )
        async with engine.connect() as connection:
            chain = await verify_chain(connection)
            owners = await connection.execute(
                select(mpesa_requests.c.checkout_request_id, mpesa_requests.c.transaction_id)
            )
            stk_owner = {
                str(r.checkout_request_id): str(r.transaction_id) for r in owners if r.checkout_request_id
            }
            rows = (
                await connection.execute(
                    select(transactions.c.id, transactions.c.status, transactions.c.failure_reason)
                )
            ).all()
    finally:
        await engine.dispose()
    final = {str(r.id): str(r.status) for r in rows}
    reasons = Counter(
        f"{r.status}: {_without_ids(r.failure_reason or '(none)')}" for r in rows if r.status != "COMPLETED"
    )
    by_scenario: dict[str, Counter[str]] = defaultdict(Counter)
    for tx_id, scenario in outcomes_of.items():
        by_scenario[scenario][final.get(tx_id, "NOT_FOUND")] += 1
    paid_twice = payments_made_twice(books, stk_owner)
    paid_twice += [f"{v.code}: {v.message}" for v in consistency.violations if v.code == Code.PAID_TWICE]
    return SoakReport(
        seed=seed,
        schedule_fingerprint=schedule_fingerprint,
        consistency=consistency,
        audit_rows=chain.rows_checked,
        audit_problems=list(chain.problems),
        paid_twice=paid_twice,
        scenario_outcomes={k: dict(sorted(v.items())) for k, v in sorted(by_scenario.items())},
        failure_reasons=dict(reasons.most_common()),
    )


_IDS = re.compile(r"[0-9a-fA-F-]{32,36}|ws_CO_\w+|\b[A-Z0-9]{10}\b|\d+(?:\.\d+)?")


def _without_ids(reason: str) -> str:
    """Reasons grouped: ids and amounts replaced, so equal causes count together."""
    return _IDS.sub("#", reason)[:140]
