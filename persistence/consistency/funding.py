"""Float money no transaction moved: the house's own (CAPITAL) or money nobody explains (SUSPENSE),
never one inside the other, so SUSPENSE's balance is exactly what a person still has to look at.

  FUNDING_IN_SUSPENSE      per currency, "float funding:" postings leave money in SUSPENSE that
                           the reclassification of migration 0022 did not move out (funding booked
                           the way it was before CAPITAL existed)
  CAPITAL_MISUSED          a posting with a CAPITAL line that is not float funding: it has a
                           transaction, or a line on an account that is neither a float nor (in
                           the one reclassification per currency) SUSPENSE
  FLOAT_ENTRY_UNEXPLAINED  (warning) a posting without a transaction moves a float against an
                           account that is neither CAPITAL (funding), SUSPENSE (paybill suspense, a
                           reconciliation finding) nor another float: a float balance nobody can
                           account for. A warning, not a violation: no flow books one, but the API
                           tests' ledger shortcut (tests/api/ledger.py::move) does, and a person
                           should see it rather than have a run fail on it

Together they make a float's balance the sum of its transactions' entries, the house's funding and
the money held in SUSPENSE, each found by the account it was booked against.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.wallet.account_kind import AccountKind
from persistence.consistency.collector import Collector, money
from persistence.consistency.queries import CREDIT, as_int
from persistence.consistency.report import Code, WarningCode
from persistence.tables import ledger_accounts as _a
from persistence.tables import ledger_entries as _e
from persistence.tables import ledger_postings as _p

FUNDING_PREFIX = "float funding:"
# The description migration 0022 gives the posting that moves old funding out of SUSPENSE.
RECLASSIFIED = "reclassified float funding: SUSPENSE to CAPITAL (migration 0022)"
_FLOATS = frozenset({AccountKind.MPESA_FLOAT.value, AccountKind.DERIV_AGENT_FLOAT.value})
_CAPITAL, _SUSPENSE = AccountKind.CAPITAL.value, AccountKind.SUSPENSE.value


async def check_funding(connection: AsyncConnection, out: Collector) -> None:
    for currency, cents in sorted((await funding_left_in_suspense(connection)).items()):
        out.violation(
            Code.FUNDING_IN_SUSPENSE,
            f"SUSPENSE {currency} holds {money(cents, currency)} of float funding: the house's own "
            "money belongs in CAPITAL (migration 0022 moves what was booked before it)",
        )
    for misuse in await capital_misuses(connection):
        out.violation(Code.CAPITAL_MISUSED, misuse.message, misuse.transaction_id)
    await _floats_without_transaction(connection, out)


async def funding_left_in_suspense(connection: AsyncConnection) -> dict[str, int]:
    """Currency -> float funding still held in SUSPENSE (credits - debits of the funding and
    reclassification postings on it); only currencies where it is not zero."""
    rows = await connection.execute(
        select(_a.c.currency, _e.c.side, _e.c.amount_cents)
        .select_from(_e.join(_a, _a.c.id == _e.c.account_id).join(_p, _p.c.id == _e.c.posting_id))
        .where(
            _a.c.kind == _SUSPENSE,
            or_(_p.c.description.like(f"{FUNDING_PREFIX}%"), _p.c.description == RECLASSIFIED),
        )
    )
    left: dict[str, int] = defaultdict(int)
    for currency, side, amount in rows:
        left[str(currency)] += as_int(amount) if side == CREDIT else -as_int(amount)
    return {currency: cents for currency, cents in left.items() if cents}


@dataclass(frozen=True, slots=True)
class CapitalMisuse:
    posting_id: str
    message: str
    transaction_id: str | None


async def capital_misuses(connection: AsyncConnection) -> list[CapitalMisuse]:
    """The postings with a CAPITAL line that are neither float funding nor the reclassification.
    Read from CAPITAL's entries (the account index), so it costs what funding has been booked."""
    capital_postings = (
        select(_e.c.posting_id)
        .select_from(_e.join(_a, _a.c.id == _e.c.account_id))
        .where(_a.c.kind == _CAPITAL)
        .scalar_subquery()
    )
    rows = await connection.execute(
        select(_p.c.id, _p.c.transaction_id, _p.c.description, _a.c.kind)
        .select_from(_p.join(_e, _e.c.posting_id == _p.c.id).join(_a, _a.c.id == _e.c.account_id))
        .where(_p.c.id.in_(capital_postings))
        .order_by(_p.c.id)
    )
    found: list[CapitalMisuse] = []
    for posting_id, (row, kinds) in _by_posting(rows).items():
        floats, others = kinds & _FLOATS, kinds - _FLOATS
        funding = bool(floats) and others == {_CAPITAL}
        reclassification = not floats and others == {_CAPITAL, _SUSPENSE}
        if row.transaction_id is None and (funding or reclassification):
            continue
        found.append(
            CapitalMisuse(
                str(posting_id),
                f"posting {posting_id} ({row.description!r}) moves CAPITAL against "
                f"{', '.join(sorted(kinds - {_CAPITAL})) or 'CAPITAL only'}"
                + (" for a transaction" if row.transaction_id is not None else "")
                + ": CAPITAL only funds the floats",
                str(row.transaction_id) if row.transaction_id is not None else None,
            )
        )
    return found


def _by_posting(rows: Any) -> dict[Any, tuple[Any, set[str]]]:
    """Posting id -> (one of its rows, the kinds of the accounts its lines are on)."""
    found: dict[Any, tuple[Any, set[str]]] = {}
    for row in rows:
        found.setdefault(row.id, (row, set()))[1].add(str(row.kind))
    return found


async def _floats_without_transaction(connection: AsyncConnection, out: Collector) -> None:
    # The postings without a transaction that move a float; their lines' kinds say what each is.
    # Not capped like other rules' rows: a posting cut in half would read as misbooked.
    on_a_float = exists(
        select(_e.c.id)
        .select_from(_e.join(_a, _a.c.id == _e.c.account_id))
        .where(_e.c.posting_id == _p.c.id, _a.c.kind.in_(sorted(_FLOATS)))
    )
    rows = await connection.execute(
        select(_p.c.id, _p.c.transaction_id, _p.c.description, _a.c.kind)
        .select_from(_p.join(_e, _e.c.posting_id == _p.c.id).join(_a, _a.c.id == _e.c.account_id))
        .where(_p.c.transaction_id.is_(None), on_a_float)
        .order_by(_p.c.id)
    )
    for posting_id, (row, kinds) in _by_posting(rows).items():
        others = kinds - _FLOATS
        # funding, suspense, or money moved between floats (a sweep: PenPay still holds it all)
        if others in ({_CAPITAL}, {_SUSPENSE}, set()):
            continue
        out.warning(
            WarningCode.FLOAT_ENTRY_UNEXPLAINED,
            f"posting {posting_id} ({row.description!r}) moves a float with no transaction against "
            f"{', '.join(sorted(others))}: neither funding (CAPITAL) nor suspense",
        )
