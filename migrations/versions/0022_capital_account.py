"""The SYSTEM CAPITAL accounts, and the float funding booked to SUSPENSE before they existed moved there

Float funding (the house's own money put into the floats) was booked Dr float / Cr SUSPENSE, so
SUSPENSE, meant to hold only money nobody can explain, showed the opening funding with any
unexplained money lost inside it. From now on funding is booked against CAPITAL (bookings.py).

For a database funded the old way this migration books, per currency, ONE reclassification
posting Dr SUSPENSE / Cr CAPITAL of what the "float funding:" postings left in SUSPENSE (net of
funds taken out), with an audit record: entries are never edited or deleted, the history still
says what was booked then, and the posting says why the balance moved. The amount is what those
postings put into SUSPENSE minus what earlier reclassifications already moved out, so running the
upgrade again (after a downgrade) books nothing more.

Revision ID: 0022
Revises: 0017
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op

from domain.shared.ids import new_uuid7
from persistence.types import UtcDateTime, UUIDv7

revision: str = "0022"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CURRENCIES = ("KES", "USD")
FUNDING_PREFIX = "float funding:"
RECLASSIFIED = "reclassified float funding: SUSPENSE to CAPITAL (migration 0022)"
_OFFLINE_INSERT = (
    "INSERT INTO ledger_accounts (id, code, kind, currency, user_id, normal_side, no_overdraft, "
    "balance_cents, version, created_at, updated_at) VALUES ("
)

_accounts = sa.table(
    "ledger_accounts",
    sa.column("id", UUIDv7()),
    sa.column("code", sa.String()),
    sa.column("kind", sa.String()),
    sa.column("currency", sa.String()),
    sa.column("user_id", UUIDv7()),
    sa.column("normal_side", sa.String()),
    sa.column("no_overdraft", sa.Boolean()),
    sa.column("balance_cents", sa.BigInteger()),
    sa.column("version", sa.Integer()),
    sa.column("created_at", UtcDateTime()),
    sa.column("updated_at", UtcDateTime()),
)
_postings = sa.table(
    "ledger_postings",
    sa.column("id", UUIDv7()),
    sa.column("transaction_id", UUIDv7()),
    sa.column("description", sa.String()),
    sa.column("reverses_posting_id", UUIDv7()),
    sa.column("created_at", UtcDateTime()),
)
_entries = sa.table(
    "ledger_entries",
    sa.column("id", UUIDv7()),
    sa.column("posting_id", UUIDv7()),
    sa.column("account_id", UUIDv7()),
    sa.column("side", sa.String()),
    sa.column("amount_cents", sa.BigInteger()),
    sa.column("amount_currency", sa.String()),
    sa.column("transaction_id", UUIDv7()),
    sa.column("created_at", UtcDateTime()),
)
_audit_pending = sa.table(
    "audit_pending",
    sa.column("occurred_at", UtcDateTime()),
    sa.column("actor", sa.String()),
    sa.column("action", sa.String()),
    sa.column("subject_type", sa.String()),
    sa.column("subject_id", sa.String()),
    sa.column("details", sa.Text()),
)


def _capital_code(currency: str) -> str:
    return f"system:capital:{currency}"


def _suspense_credit_net(bind: sa.Connection, currency: str, description: sa.ColumnElement[bool]) -> int:
    """Credits - debits on the SUSPENSE account of `currency` by the postings `description` selects."""
    signed = sa.case((_entries.c.side == "CREDIT", _entries.c.amount_cents), else_=-_entries.c.amount_cents)
    net = bind.execute(
        sa.select(sa.func.sum(signed))
        .select_from(
            _entries.join(_accounts, _accounts.c.id == _entries.c.account_id).join(
                _postings, _postings.c.id == _entries.c.posting_id
            )
        )
        .where(_accounts.c.kind == "SUSPENSE", _accounts.c.currency == currency, description)
    ).scalar()
    return int(net or 0)


def _account_id(bind: sa.Connection, code: str) -> object | None:
    return bind.execute(sa.select(_accounts.c.id).where(_accounts.c.code == code)).scalar()


def _open_capital(bind: sa.Connection, currency: str, now: datetime) -> None:
    if _account_id(bind, _capital_code(currency)) is None:
        bind.execute(
            _accounts.insert().values(
                id=new_uuid7(),
                code=_capital_code(currency),
                kind="CAPITAL",
                currency=currency,
                user_id=None,
                normal_side="CREDIT",
                no_overdraft=False,
                balance_cents=0,
                version=1,
                created_at=now,
                updated_at=now,
            )
        )


def _move(bind: sa.Connection, code: str, delta: int, now: datetime) -> None:
    bind.execute(
        _accounts.update()
        .where(_accounts.c.code == code)
        .values(
            balance_cents=_accounts.c.balance_cents + delta, version=_accounts.c.version + 1, updated_at=now
        )
    )


def reclassify(bind: sa.Connection, currency: str, now: datetime) -> int:
    """Book the one reclassification posting `currency` still needs; returns its amount (0: none)."""
    funded = _suspense_credit_net(bind, currency, _postings.c.description.like(f"{FUNDING_PREFIX}%"))
    moved = _suspense_credit_net(bind, currency, _postings.c.description == RECLASSIFIED)
    amount = funded + moved  # what funding still leaves in SUSPENSE (moved is <= 0 after a move)
    suspense_code = f"system:suspense:{currency}"
    suspense_id = _account_id(bind, suspense_code)
    if amount == 0 or suspense_id is None:
        return 0
    capital_id = _account_id(bind, _capital_code(currency))
    posting_id = new_uuid7()
    bind.execute(
        _postings.insert().values(
            id=posting_id,
            transaction_id=None,
            description=RECLASSIFIED,
            reverses_posting_id=None,
            created_at=now,
        )
    )
    # Funding in: Dr SUSPENSE / Cr CAPITAL; more taken out than put in: the mirror.
    suspense_side, capital_side = ("DEBIT", "CREDIT") if amount > 0 else ("CREDIT", "DEBIT")
    bind.execute(
        _entries.insert(),
        [
            {
                "id": new_uuid7(),
                "posting_id": posting_id,
                "account_id": account_id,
                "side": side,
                "amount_cents": abs(amount),
                "amount_currency": currency,
                "transaction_id": None,
                "created_at": now,
            }
            for account_id, side in ((suspense_id, suspense_side), (capital_id, capital_side))
        ],
    )
    # Both are credit-normal: SUSPENSE loses what CAPITAL gains.
    _move(bind, suspense_code, -amount, now)
    _move(bind, _capital_code(currency), amount, now)
    details = {
        "amount_minor": amount,
        "currency": currency,
        "from": "SUSPENSE",
        "to": "CAPITAL",
        "migration": revision,
        "reason": "float funding booked to SUSPENSE before CAPITAL existed",
    }
    bind.execute(
        _audit_pending.insert().values(
            occurred_at=now,
            actor="system:migration",
            action="ledger.funding_reclassified",
            subject_type="LedgerPosting",
            subject_id=str(posting_id),
            details=json.dumps(details, separators=(",", ":"), sort_keys=True),
        )
    )
    return amount


def upgrade() -> None:
    now = datetime.now(UTC)
    if context.is_offline_mode():
        # Offline SQL (`--sql`, MariaDB) is for a new database: nothing was funded yet.
        stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
        for currency in _CURRENCIES:
            values = (
                f"UNHEX('{new_uuid7().hex}'), '{_capital_code(currency)}', 'CAPITAL', '{currency}', "
                f"NULL, 'CREDIT', 0, 0, 1, '{stamp}', '{stamp}'"
            )
            op.execute(_OFFLINE_INSERT + values + ")")
        return
    bind = op.get_bind()
    for currency in _CURRENCIES:
        _open_capital(bind, currency, now)
        reclassify(bind, currency, now)


def downgrade() -> None:
    # Entries are never deleted: a reclassification stays booked (an upgrade again books nothing
    # more); only capital accounts never booked go.
    op.execute("DELETE FROM ledger_accounts WHERE kind = 'CAPITAL' AND version = 1")
