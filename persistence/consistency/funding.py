"""Float money no transaction moved: the house's own (CAPITAL) or money nobody explains (SUSPENSE),
never one inside the other, so SUSPENSE's balance is exactly what a person still has to look at.

  FUNDING_IN_SUSPENSE      per currency, "float funding:" postings leave money in SUSPENSE that
                           the reclassification of migration 0022 did not move out (funding booked
                           the way it was before CAPITAL existed)
  CAPITAL_MISUSED          a posting with a CAPITAL line that is not float funding: it has a
                           transaction, or a line on an account that is neither a float nor (in
                           the one reclassification per currency) SUSPENSE
  FLOAT_ENTRY_UNEXPLAINED  a posting without a transaction moves a float against an account that
                           is neither CAPITAL (funding) nor SUSPENSE (paybill suspense, a
                           reconciliation finding): a float balance nobody can account for

Together they make a float's balance the sum of its transactions' entries, the house's funding and
the money held in SUSPENSE, each found by the account it was booked against.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.wallet.account_kind import AccountKind
from persistence.consistency.collector import Collector, money
from persistence.consistency.queries import CREDIT, as_int
from persistence.consistency.report import Code
from persistence.tables import ledger_accounts as _a
from persistence.tables import ledger_entries as _e
from persistence.tables import ledger_postings as _p

FUNDING_PREFIX = "float funding:"
# The description migration 0022 gives the posting that moves old funding out of SUSPENSE.
RECLASSIFIED = "reclassified float funding: SUSPENSE to CAPITAL (migration 0022)"
_FLOATS = frozenset({AccountKind.MPESA_FLOAT.value, AccountKind.DERIV_AGENT_FLOAT.value})
_CAPITAL, _SUSPENSE = AccountKind.CAPITAL.value, AccountKind.SUSPENSE.value


async def check_funding(connection: AsyncConnection, out: Collector) -> None:
    await _funding_left_in_suspense(connection, out)
    await _postings_without_transaction(connection, out)


async def _funding_left_in_suspense(connection: AsyncConnection, out: Collector) -> None:
    # Credits - debits on SUSPENSE by funding and reclassification postings: zero once reclassified.
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
    for currency, cents in sorted(left.items()):
        if cents:
            out.violation(
                Code.FUNDING_IN_SUSPENSE,
                f"SUSPENSE {currency} holds {money(cents, currency)} of float funding: the house's own "
                "money belongs in CAPITAL (migration 0022 moves what was booked before it)",
            )


async def _postings_without_transaction(connection: AsyncConnection, out: Collector) -> None:
    # The postings with a CAPITAL line, and those without a transaction that move a float; their
    # lines' kinds say what each is. Few rows: funding and suspense are rare next to payments.
    other = _e.alias("other")
    other_account = _a.alias("other_account")
    relevant = exists(
        select(other.c.id)
        .select_from(other.join(other_account, other_account.c.id == other.c.account_id))
        .where(
            other.c.posting_id == _p.c.id,
            or_(
                other_account.c.kind == _CAPITAL,
                and_(other_account.c.kind.in_(sorted(_FLOATS)), _p.c.transaction_id.is_(None)),
            ),
        )
    )
    # Not capped like other rules' rows: a posting cut in half would read as misbooked.
    rows = await connection.execute(
        select(_p.c.id, _p.c.transaction_id, _p.c.description, _a.c.kind)
        .select_from(_p.join(_e, _e.c.posting_id == _p.c.id).join(_a, _a.c.id == _e.c.account_id))
        .where(relevant)
        .order_by(_p.c.id)
    )
    kinds: dict[Any, set[str]] = defaultdict(set)
    about: dict[Any, Any] = {}
    for row in rows:
        kinds[row.id].add(str(row.kind))
        about[row.id] = row
    for posting_id, found in kinds.items():
        row = about[posting_id]
        floats, others = found & _FLOATS, found - _FLOATS
        tx_id = str(row.transaction_id) if row.transaction_id is not None else None
        if _CAPITAL in found:
            funding = bool(floats) and others == {_CAPITAL}
            reclassification = not floats and others == {_CAPITAL, _SUSPENSE}
            if row.transaction_id is not None or not (funding or reclassification):
                out.violation(
                    Code.CAPITAL_MISUSED,
                    f"posting {posting_id} ({row.description!r}) moves CAPITAL against "
                    f"{', '.join(sorted(found - {_CAPITAL}))}"
                    + (" for a transaction" if row.transaction_id is not None else "")
                    + ": CAPITAL only funds the floats",
                    tx_id,
                )
        elif floats and others != {_SUSPENSE}:
            out.violation(
                Code.FLOAT_ENTRY_UNEXPLAINED,
                f"posting {posting_id} ({row.description!r}) moves a float with no transaction against "
                f"{', '.join(sorted(others)) or 'floats only'}: neither funding (CAPITAL) nor "
                "suspense",
            )
