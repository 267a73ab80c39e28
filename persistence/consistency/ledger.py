"""The ledger sums to zero: per currency, per posting, and every entry where its account, posting
and transaction say it is.

  LEDGER_UNBALANCED        per currency, sum of DEBIT entries != sum of CREDIT entries
  POSTING_UNBALANCED       a posting's entries do not net to zero in some currency
  UNKNOWN_ACCOUNT          an entry names a ledger account that does not exist
  ENTRY_CURRENCY_MISMATCH  an entry's currency is not its account's currency
  ENTRY_TRANSACTION_MISMATCH  an entry's transaction_id differs from its posting's (or the
                           posting is missing)
  UNKNOWN_TRANSACTION      an entry names a transaction that does not exist
  WRONG_USER_WALLET        a transaction's entry on another user's wallet
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import and_, case, func, not_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.wallet.account_kind import AccountKind
from persistence.consistency.collector import Collector, money
from persistence.consistency.queries import CREDIT, DEBIT, as_int, chunks, net_where, signed
from persistence.consistency.report import Code
from persistence.tables import ledger_accounts as _a
from persistence.tables import ledger_entries as _e
from persistence.tables import ledger_postings as _p
from persistence.tables import transactions as _t


async def check_sums(connection: AsyncConnection, out: Collector) -> None:
    amount = _e.c.amount_cents
    rows = await connection.execute(
        select(
            _e.c.amount_currency,
            func.sum(case((_e.c.side == DEBIT, amount), else_=0)),
            func.sum(case((_e.c.side == CREDIT, amount), else_=0)),
            func.sum(case((_e.c.side.not_in([DEBIT, CREDIT]), 1), else_=0)),
        ).group_by(_e.c.amount_currency)
    )
    for currency, debits, credits, odd_sides in rows:
        debit_cents, credit_cents = as_int(debits), as_int(credits)
        out.report.sums_by_currency[str(currency)] = {
            "debit_cents": debit_cents,
            "credit_cents": credit_cents,
        }
        if debit_cents != credit_cents or as_int(odd_sides):
            extra = f"; {as_int(odd_sides)} entries with a side that is neither" if as_int(odd_sides) else ""
            out.violation(
                Code.LEDGER_UNBALANCED,
                f"{currency}: debits {money(debit_cents)} != credits {money(credit_cents)} "
                f"(difference {money(debit_cents - credit_cents)}){extra}",
            )


async def check_postings(connection: AsyncConnection, out: Collector) -> None:
    # Per posting, one net per currency the ledger holds (grouping by posting alone walks the
    # posting_id index; grouping by posting and currency would sort a temporary table).
    currencies = sorted(out.report.sums_by_currency)
    nets = [
        net_where(_e.c.amount_currency == currency).label(f"net_{i}") for i, currency in enumerate(currencies)
    ]
    if nets:
        unbalanced = (
            select(_e.c.posting_id, *nets)
            .group_by(_e.c.posting_id)
            .having(
                or_(
                    *[func.sum(case((_e.c.amount_currency == c, signed()), else_=0)) != 0 for c in currencies]
                )
            )
        )
        rows = await out.rows(connection, unbalanced, "unbalanced postings")
        transaction_of: dict[Any, Any] = {}
        for chunk in chunks([row.posting_id for row in rows]):
            found = await connection.execute(
                select(_p.c.id, _p.c.transaction_id).where(_p.c.id.in_(list(chunk)))
            )
            transaction_of.update({row.id: row.transaction_id for row in found})
        for row in rows:
            for i, currency in enumerate(currencies):
                value = as_int(getattr(row, f"net_{i}"))
                if value:
                    out.violation(
                        Code.POSTING_UNBALANCED,
                        f"posting {row.posting_id} does not balance in {currency}: "
                        f"debits - credits = {money(value)}",
                        transaction_of.get(row.posting_id),
                    )

    # One pass over the entries, each joined to its account, posting and transaction.
    account_missing = _a.c.id.is_(None)
    posting_missing = _p.c.id.is_(None)
    wrong_currency = _e.c.amount_currency != _a.c.currency
    wrong_transaction = not_(_e.c.transaction_id.is_not_distinct_from(_p.c.transaction_id))
    transaction_missing = and_(_e.c.transaction_id.is_not(None), _t.c.id.is_(None))
    wrong_user = and_(
        _a.c.kind == AccountKind.USER_WALLET.value, _t.c.id.is_not(None), _a.c.user_id != _t.c.user_id
    )
    entries = (
        select(
            _e.c.id,
            _e.c.posting_id,
            _e.c.account_id,
            _e.c.transaction_id,
            _e.c.amount_currency,
            _a.c.id.label("found_account"),
            _a.c.code,
            _a.c.currency,
            _p.c.id.label("found_posting"),
            _p.c.transaction_id.label("posting_tx"),
            _t.c.id.label("found_tx"),
            _t.c.user_id.label("tx_user"),
            wrong_user.label("wrong_user"),
        )
        .select_from(
            _e.outerjoin(_a, _a.c.id == _e.c.account_id)
            .outerjoin(_p, _p.c.id == _e.c.posting_id)
            .outerjoin(_t, _t.c.id == _e.c.transaction_id)
        )
        .where(
            or_(
                account_missing,
                posting_missing,
                wrong_currency,
                wrong_transaction,
                transaction_missing,
                wrong_user,
            )
        )
        .order_by(_e.c.id)
    )
    unknown_transactions: dict[Any, int] = defaultdict(int)
    wrong_wallets: dict[tuple[Any, str], Any] = {}
    for row in await out.rows(connection, entries, "ledger entries"):
        tx_id = row.transaction_id
        if row.found_account is None:
            out.violation(
                Code.UNKNOWN_ACCOUNT,
                f"entry {row.id} of posting {row.posting_id} names ledger account {row.account_id}, "
                "which does not exist",
                tx_id,
            )
        elif row.amount_currency != row.currency:
            out.violation(
                Code.ENTRY_CURRENCY_MISMATCH,
                f"entry {row.id} moves {row.amount_currency} on account {row.code}, "
                f"which holds {row.currency}",
                tx_id,
            )
        if row.found_posting is None:
            out.violation(
                Code.ENTRY_TRANSACTION_MISMATCH,
                f"entry {row.id} names posting {row.posting_id}, which does not exist",
                tx_id,
            )
        elif row.posting_tx != tx_id:
            out.violation(
                Code.ENTRY_TRANSACTION_MISMATCH,
                f"entry {row.id} says transaction {tx_id}, "
                f"its posting {row.posting_id} says {row.posting_tx}",
                tx_id or row.posting_tx,
            )
        if tx_id is not None and row.found_tx is None:
            unknown_transactions[tx_id] += 1
        if row.wrong_user:
            wrong_wallets[(tx_id, row.code)] = row.tx_user
    for tx_id, count in unknown_transactions.items():
        out.violation(
            Code.UNKNOWN_TRANSACTION,
            f"{count} ledger entries name transaction {tx_id}, which does not exist",
            tx_id,
        )
    for (tx_id, code), user_id in wrong_wallets.items():
        out.violation(
            Code.WRONG_USER_WALLET,
            f"transaction of user {user_id} has entries on wallet {code} of another user",
            tx_id,
        )
