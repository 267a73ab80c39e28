"""The continuous auditor's verdicts and checkpoints; the FX spread's own ledger accounts

- audit_verdicts: one row per check per `penpay worker audit` run (OpsService.GetAuditorVerdicts).
- audit_checkpoints: where each incremental check got to.
- transactions.rate_reference: the quote's reference (mid) rate, so the spread of a conversion can
  be booked apart from the conversion itself (NULL for quotes locked before: no spread line).
- the SYSTEM FX_SPREAD accounts, one per currency (credit-normal, may go below zero like FX).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import context, op

from domain.shared.ids import new_uuid7
from persistence.types import UtcDateTime, UUIDv7

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CURRENCIES = ("KES", "USD")
_OFFLINE_INSERT = (
    "INSERT INTO ledger_accounts (id, code, kind, currency, user_id, normal_side, no_overdraft, "
    "balance_cents, version, created_at, updated_at) VALUES ("
)


def _accounts() -> sa.TableClause:
    return sa.table(
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


def upgrade() -> None:
    op.add_column("transactions", sa.Column("rate_reference", sa.String(length=64), nullable=True))
    op.create_table(
        "audit_verdicts",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("check_name", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("summary", sa.String(length=1000), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("checked_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_verdicts_checked_at", "audit_verdicts", ["checked_at"])
    op.create_index("ix_audit_verdicts_check_name", "audit_verdicts", ["check_name", "id"])
    op.create_table(
        "audit_checkpoints",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Text(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    now = datetime.now(UTC)
    if context.is_offline_mode():
        # Offline SQL (`--sql`, MariaDB) is for a new database: no such account exists yet.
        stamp = now.strftime("%Y-%m-%d %H:%M:%S.%f")
        for currency in _CURRENCIES:
            values = (
                f"UNHEX('{new_uuid7().hex}'), 'system:fx_spread:{currency}', 'FX_SPREAD', '{currency}', "
                f"NULL, 'CREDIT', 0, 0, 1, '{stamp}', '{stamp}'"
            )
            op.execute(_OFFLINE_INSERT + values + ")")
        return
    accounts = _accounts()
    bind = op.get_bind()
    for currency in _CURRENCIES:
        code = f"system:fx_spread:{currency}"
        if bind.execute(sa.select(accounts.c.id).where(accounts.c.code == code)).first() is None:
            bind.execute(
                accounts.insert().values(
                    id=new_uuid7(),
                    code=code,
                    kind="FX_SPREAD",
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


def downgrade() -> None:
    # Only spread accounts never booked go (entries are never deleted, nor what they name).
    op.execute("DELETE FROM ledger_accounts WHERE kind = 'FX_SPREAD' AND version = 1")
    op.drop_table("audit_checkpoints")
    op.drop_table("audit_verdicts")
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("rate_reference")
