"""The continuous auditor (`penpay worker audit`): every `interval` seconds, the invariants the money
rests on, checked incrementally where a full pass would grow with the database.

  ledger_sums          debits - credits per currency are zero (one aggregate over the entries)
  no_overdraft         no account that may not be overdrawn is below zero
  account_balances     each account touched since the checkpoint holds what its entries add up to
                       (the checkpoint is the newest entry seen, read back with an overlap so an
                       entry committed late is still seen); every account once per
                       `full_pass_every` (a balance changed without an entry touches no account)
  audit_chain          the hash chain verified from its last verified row (persistence.audit); and
                       how long the oldest record committed but not yet sealed has waited (beyond
                       `pending_alert_after`: alert `audit_seal_behind`, the sealer is down or stuck)
  float_deriv          the ledger's Deriv agent float against the agent's balance (gateway GetBalance)
  float_mpesa          the ledger's M-Pesa float, as its entries stood when Daraja answered, against the
                       latest Account Balance result the adapter took about each shortcode holding
                       part of it (the collecting ones and the B2C one), their Utility Accounts summed
  stale_transactions   transactions whose status has not moved within `stale_after`, by status
                       (NEEDS_REVIEW is listed, not failed: it waits for a person by design)
  funding_in_capital   float funding is the house's own money, in CAPITAL: none left in SUSPENSE
                       (so SUSPENSE's balance is only money nobody explains) and CAPITAL moved by
                       nothing but float funding (persistence.consistency.funding; reads only the
                       SUSPENSE funding postings and CAPITAL's entries)
  float_leases         each float's leased_cents is the allowances of its unretired leases
                       (persistence.float_leases), and no lease is left unretired `lease_grace`
                       after the relay should have retired it (its process died holding it)

Each run stores one verdict per check (audit_verdicts: OK, FAIL or SKIPPED with a summary and
details), moves the checkpoints only past what it verified, sets Prometheus gauges and raises a
structured alert (`audit_<check>`) when a check goes from healthy or unknown to failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from application.alerts import raise_alert
from domain.shared.clock import Clock, SystemClock
from domain.wallet.account_kind import AccountKind
from domain.wallet.money import Currency, Money
from persistence import auditor_queries as q
from persistence import float_leases
from persistence.audit import ChainPoint, oldest_pending, verify_chain
from persistence.auditor_store import (
    AUDIT_CHECKS,
    Verdict,
    last_verdicts,
    prune_verdicts,
    read_checkpoint,
    save_verdicts,
    write_checkpoint,
)
from persistence.consistency.funding import capital_misuses, funding_left_in_suspense
from workers import metrics

log = structlog.get_logger("penpay.auditor")

OK, FAIL, SKIPPED = "OK", "FAIL", "SKIPPED"
CHECKS = AUDIT_CHECKS
# An entry committed after a later one (two writers) is still read back this far behind the checkpoint.
ENTRY_OVERLAP = timedelta(minutes=5)
_LISTED = 20  # problems listed in a verdict's details
_GAUGE = {OK: 1, FAIL: 0, SKIPPED: -1}


@dataclass(frozen=True, slots=True)
class AuditorConfig:
    stale_after: timedelta = timedelta(minutes=15)
    float_tolerance: tuple[tuple[Currency, int], ...] = ((Currency.USD, 10_000), (Currency.KES, 1_000_000))
    retention: timedelta = timedelta(days=7)
    interval: float = 60.0
    # Every account is recomputed this often (a balance changed without an entry is seen then).
    full_pass_every: timedelta = timedelta(hours=24)
    # An audit record waiting longer than this to be chained means the sealer is not sealing.
    pending_alert_after: timedelta = timedelta(minutes=2)
    # A lease still unretired this long after the relay's roll-up should have retired it
    lease_grace: timedelta = timedelta(minutes=5)

    def tolerance(self, currency: Currency) -> int:
        return dict(self.float_tolerance).get(currency, 0)


def parse_utility_balance(text: str | None) -> Money | None:
    """The Utility Account's available balance from Daraja's AccountBalance string
    ("Working Account|KES|1.00|1.00|0.00|0.00&Utility Account|KES|...")."""
    for account in (text or "").split("&"):
        parts = account.split("|")
        if len(parts) >= 4 and parts[0].strip() == "Utility Account" and parts[1] == "KES":
            try:
                return Money.parse(parts[3].strip(), Currency.KES)
            except ValueError:
                return None
    return None


class Auditor:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        config: AuditorConfig | None = None,
        clock: Clock | None = None,
        deriv_balance: Callable[[], Awaitable[Money]] | None = None,
        ask_mpesa_balance: Callable[[], Awaitable[object]] | None = None,
        mpesa_shortcodes: tuple[str, ...] = (),
    ) -> None:
        """mpesa_shortcodes: every shortcode holding part of the M-Pesa float (collecting and B2C),
        whose balances together are the float; empty: the latest answer, whatever it was about."""
        self._engine = engine
        self.config = config or AuditorConfig()
        self._clock = clock or SystemClock()
        self._deriv_balance = deriv_balance
        self._ask_mpesa_balance = ask_mpesa_balance
        self._mpesa_shortcodes = mpesa_shortcodes
        self._seal_behind = False  # alerted about unsealed records; again only after they clear

    # --- one run --------------------------------------------------------------------------------

    async def run_once(self) -> list[Verdict]:
        now = self._clock.now()
        run_id = str(uuid.uuid4())
        checkpoints: dict[str, dict[str, Any]] = {}
        deriv = await self._float_deriv()  # the provider first, the ledger right after
        async with self._engine.connect() as conn:  # one snapshot (REPEATABLE READ on MariaDB)
            verdicts = [
                await self._ledger_sums(conn),
                await self._no_overdraft(conn),
                await self._account_balances(conn, checkpoints, now),
                await self._audit_chain(conn, checkpoints, now),
                deriv,
                await self._float_mpesa(conn),
                await self._stale(conn, now),
                await self._funding_in_capital(conn),
                await self._float_leases(conn, now),
            ]
            await conn.rollback()
        async with self._engine.begin() as conn:
            before = await last_verdicts(conn)
            await save_verdicts(conn, run_id, verdicts, now=now)
            for name, position in checkpoints.items():
                await write_checkpoint(conn, name, position, now=now)
            await prune_verdicts(conn, before=now - self.config.retention)
        self._report(verdicts, before, run_id)
        await self._ask_for_mpesa_balance()
        return verdicts

    async def run(self, stop: asyncio.Event) -> None:
        log.info("auditor.started", interval=self.config.interval)
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as exc:  # a run that failed is retried next interval; say so
                log.warning("auditor.run_failed", error=type(exc).__name__, detail=str(exc)[:200])
                raise_alert(
                    "audit_run_failed", "the auditor could not complete a run", error=type(exc).__name__
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.interval)
        log.info("auditor.stopped")

    def _report(self, verdicts: list[Verdict], before: dict[str, Verdict], run_id: str) -> None:
        metrics.AUDIT_RUNS.inc()
        for verdict in verdicts:
            metrics.AUDIT_CHECK_OK.labels(check=verdict.check).set(_GAUGE[verdict.status])
            previous = before.get(verdict.check)
            if verdict.failed and (previous is None or not previous.failed):
                raise_alert(f"audit_{verdict.check}", verdict.summary, run_id=run_id)
            elif not verdict.failed and previous is not None and previous.failed:
                log.info("auditor.recovered", check=verdict.check, run_id=run_id)
        failed = [v.check for v in verdicts if v.failed]
        log.info("auditor.run", run_id=run_id, failed=",".join(failed) or "none")

    async def _ask_for_mpesa_balance(self) -> None:
        """Ask Daraja for the balance now; its result (by callback) is what the next run compares."""
        if self._ask_mpesa_balance is None:
            return
        try:
            await self._ask_mpesa_balance()
        except Exception as exc:
            log.warning("auditor.mpesa_balance_not_asked", error=type(exc).__name__)

    # --- the checks -----------------------------------------------------------------------------

    async def _ledger_sums(self, conn: AsyncConnection) -> Verdict:
        sums = await q.ledger_sums(conn)
        for currency in Currency:
            metrics.AUDIT_LEDGER_SUM.labels(currency=currency.value).set(sums.get(currency.value, 0))
        broken = {c: v for c, v in sums.items() if v}
        if broken:
            listed = ", ".join(f"{c} {v}" for c, v in sorted(broken.items()))
            return Verdict("ledger_sums", FAIL, f"the ledger does not sum to zero: {listed}", {"sums": sums})
        return Verdict("ledger_sums", OK, "debits equal credits in every currency", {"sums": sums})

    async def _no_overdraft(self, conn: AsyncConnection) -> Verdict:
        found = await q.overdrawn_accounts(conn, limit=_LISTED)
        metrics.AUDIT_OVERDRAWN.set(len(found))
        details = {"accounts": [p.to_dict() for p in found]}
        if found:
            names = ", ".join(p.code for p in found[:5])
            return Verdict(
                "no_overdraft", FAIL, f"{len(found)} no-overdraft accounts below zero: {names}", details
            )
        return Verdict("no_overdraft", OK, "no no-overdraft account is below zero", details)

    async def _account_balances(
        self, conn: AsyncConnection, out: dict[str, dict[str, Any]], now: datetime
    ) -> Verdict:
        saved = await read_checkpoint(conn, "account_balances") or {}
        full_at = saved.get("full_at")
        full = full_at is None or now - datetime.fromisoformat(str(full_at)) >= self.config.full_pass_every
        until_saved = saved.get("entries_until")
        since = None if full or not until_saved else datetime.fromisoformat(str(until_saved))
        accounts, newest = await q.touched_since(conn, None if since is None else since - ENTRY_OVERLAP)
        found = await q.balance_mismatches(conn, accounts)
        metrics.AUDIT_BALANCE_MISMATCHES.set(len(found))
        details: dict[str, Any] = {
            "accounts_checked": len(accounts),
            "full_pass": since is None,
            "from": None if since is None else since.isoformat(),
            "mismatches": [p.to_dict() for p in found[:_LISTED]],
        }
        if found:
            # The checkpoint stays: the next run looks at these accounts again.
            names = ", ".join(p.code for p in found[:5])
            summary = f"{len(found)} accounts do not hold what their entries add up to: {names}"
            return Verdict("account_balances", FAIL, summary, details)
        until = newest.isoformat() if newest is not None else saved.get("entries_until")
        out["account_balances"] = {
            "entries_until": until,
            "full_at": now.isoformat() if since is None else full_at,
        }
        details["to"] = until
        return Verdict(
            "account_balances",
            OK,
            f"{len(accounts)} accounts touched since the checkpoint hold their entries",
            details,
        )

    async def _audit_chain(
        self, conn: AsyncConnection, out: dict[str, dict[str, Any]], now: datetime
    ) -> Verdict:
        saved = await read_checkpoint(conn, "audit_chain")
        start = (
            None
            if saved is None
            else ChainPoint(int(saved["row_id"]), str(saved["row_hash"]), int(saved["rows"]))
        )
        report = await verify_chain(conn, start=start, max_problems=_LISTED)
        metrics.AUDIT_CHAIN_PROBLEMS.set(len(report.problems))
        waited = await self._pending_wait(conn, now)
        rows = (start.rows if start else 0) + report.rows_checked
        details = {
            "from_row": None if start is None else start.row_id,
            "rows_checked": report.rows_checked,
            "pending": report.pending,
            "oldest_pending_seconds": waited,
            "problems": report.problems[:_LISTED],
        }
        if not report.ok:
            return Verdict("audit_chain", FAIL, f"audit chain broken: {report.problems[0]}", details)
        if report.last_id is not None:
            out["audit_chain"] = {"row_id": report.last_id, "row_hash": report.last_hash, "rows": rows}
        return Verdict(
            "audit_chain", OK, f"audit chain intact: {rows} rows, {report.rows_checked} new", details
        )

    async def _pending_wait(self, conn: AsyncConnection, now: datetime) -> float:
        """Seconds the oldest unsealed record has waited; alert once when past the limit. Not a
        failed verdict: the records are committed, only their chaining is late."""
        oldest = await oldest_pending(conn)
        waited = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
        metrics.AUDIT_OLDEST_PENDING.set(waited)
        behind = waited > self.config.pending_alert_after.total_seconds()
        if behind and not self._seal_behind:
            raise_alert(
                "audit_seal_behind",
                "audit records wait in audit_pending unsealed: is the audit sealer running?",
                seconds=int(waited),
            )
        self._seal_behind = behind
        return waited

    async def _float_deriv(self) -> Verdict:
        if self._deriv_balance is None:
            return Verdict("float_deriv", SKIPPED, "no Deriv gateway to ask (PENPAY_GATEWAY_ADDR)")
        try:
            provider = await self._deriv_balance()
        except Exception as exc:
            return Verdict(
                "float_deriv", SKIPPED, f"the Deriv gateway did not give the balance ({type(exc).__name__})"
            )
        async with self._engine.connect() as conn:
            ledger = await q.float_balance(conn, AccountKind.DERIV_AGENT_FLOAT, provider.currency.value)
        return self._compare("float_deriv", "Deriv agent float", ledger, provider, {})

    async def _float_mpesa(self, conn: AsyncConnection) -> Verdict:
        if self._mpesa_shortcodes:
            latest = await q.latest_mpesa_balances(conn)
            missing = [code for code in self._mpesa_shortcodes if code not in latest]
            if missing:
                said = f"no M-Pesa Account Balance result recorded yet for shortcode {', '.join(missing)}"
                return Verdict("float_mpesa", SKIPPED, said)
            answers = [latest[code] for code in self._mpesa_shortcodes]
        else:
            answer = await q.latest_mpesa_balance(conn)
            if answer is None:
                return Verdict("float_mpesa", SKIPPED, "no M-Pesa Account Balance result recorded yet")
            answers = [answer]
        newest = max(answers, key=lambda a: a.answered_at)
        details: dict[str, Any] = {
            "answered_at": newest.answered_at.isoformat(),
            "conversation_id": newest.conversation_id,
            "result_code": newest.result_code,
        }
        total = 0
        per_shortcode: dict[str, Any] = {}
        for answer in answers:
            provider = parse_utility_balance(answer.account_balance)
            per_shortcode[answer.shortcode or ""] = {
                "conversation_id": answer.conversation_id,
                "answered_at": answer.answered_at.isoformat(),
                "result_code": answer.result_code,
                "provider_cents": None if provider is None else provider.amount_minor,
            }
            if answer.result_code not in ("0", None) or provider is None:
                summary = (
                    "the latest Account Balance result gives no Utility Account balance "
                    f"(shortcode {answer.shortcode or 'unnamed'}, ResultCode {answer.result_code})"
                )
                return Verdict("float_mpesa", SKIPPED, summary, {**details, "shortcodes": per_shortcode})
            total += provider.amount_minor
        if self._mpesa_shortcodes:
            details["shortcodes"] = per_shortcode
        # The ledger as it stood at the newest answer (the shortcodes are asked together, seconds apart).
        ledger = await q.float_balance(conn, AccountKind.MPESA_FLOAT, "KES", at=newest.answered_at)
        return self._compare("float_mpesa", "M-Pesa float", ledger, Money(total, Currency.KES), details)

    def _compare(
        self, check: str, what: str, ledger: int, provider: Money, details: dict[str, Any]
    ) -> Verdict:
        difference = ledger - provider.amount_minor
        tolerance = self.config.tolerance(provider.currency)
        metrics.AUDIT_FLOAT_DIFFERENCE.labels(
            float=check.removeprefix("float_"), currency=provider.currency.value
        ).set(difference)
        details = {
            **details,
            "currency": provider.currency.value,  # the console shows the figures as money
            "ledger_cents": ledger,
            "provider_cents": provider.amount_minor,
            "difference_cents": difference,
            "tolerance_cents": tolerance,
        }
        cur = provider.currency
        said = (
            f"{what}: ledger {Money(ledger, cur)}, provider {provider}, "
            f"difference {Money(difference, cur)} (tolerance {Money(tolerance, cur)})"
        )
        return Verdict(check, FAIL if abs(difference) > tolerance else OK, said, details)

    async def _stale(self, conn: AsyncConnection, now: datetime) -> Verdict:
        counts = await q.past_time_limit(conn, now - self.config.stale_after)
        metrics.AUDIT_PAST_TIME_LIMIT.clear()
        for (type_, status), n in counts.items():
            metrics.AUDIT_PAST_TIME_LIMIT.labels(type=type_, status=status).set(n)
        stuck = {k: n for k, n in counts.items() if k[1] != "NEEDS_REVIEW"}
        details = {
            "limit_seconds": self.config.stale_after.total_seconds(),
            "by_status": {f"{t} {s}": n for (t, s), n in sorted(counts.items())},
        }
        if stuck:
            listed = ", ".join(f"{t} {s}: {n}" for (t, s), n in sorted(stuck.items()))
            return Verdict(
                "stale_transactions", FAIL, f"transactions past their time limit: {listed}", details
            )
        review = sum(n for k, n in counts.items() if k[1] == "NEEDS_REVIEW")
        return Verdict("stale_transactions", OK, f"nothing stuck; {review} in review past the limit", details)

    async def _float_leases(self, conn: AsyncConnection, now: datetime) -> Verdict:
        found = await float_leases.audit(conn, now, grace=self.config.lease_grace)
        details: dict[str, Any] = {
            "mismatched": [
                {"account": code, "leased_minor": leased, "allowances_minor": allowances}
                for code, leased, allowances in found.mismatched[:_LISTED]
            ],
            "abandoned": [
                {"lease_id": lease_id, "account": code, "expires_at": expires.isoformat()}
                for lease_id, code, expires in found.abandoned[:_LISTED]
            ],
        }
        problems = [
            f"{code}: leased {leased} but its unretired leases allow {allowances}"
            for code, leased, allowances in found.mismatched
        ]
        if found.abandoned:
            problems.append(f"{len(found.abandoned)} leases left unretired long past their expiry")
        if problems:
            return Verdict("float_leases", FAIL, "; ".join(problems), details)
        return Verdict("float_leases", OK, "every float's leased total is its live leases'", details)

    async def _funding_in_capital(self, conn: AsyncConnection) -> Verdict:
        left = await funding_left_in_suspense(conn)
        misuses = await capital_misuses(conn)
        details: dict[str, Any] = {
            "funding_in_suspense_minor": left,
            "capital_misused": [
                {"posting_id": m.posting_id, "message": m.message} for m in misuses[:_LISTED]
            ],
        }
        problems = [
            f"{Money(cents, Currency(cur))} of float funding in SUSPENSE"
            for cur, cents in sorted(left.items())
        ]
        if misuses:
            problems.append(f"{len(misuses)} postings move CAPITAL other than float funding")
        if problems:
            return Verdict("funding_in_capital", FAIL, "; ".join(problems), details)
        return Verdict(
            "funding_in_capital",
            OK,
            "float funding is all in CAPITAL; SUSPENSE holds only unexplained money",
            details,
        )
