"""ledger_balance_deltas: balance changes of hot accounts, rolled up later

Every deposit booked each system account it touches (the M-Pesa float, FX, FX_SPREAD, ...) with a
locked read and an update of its row, so concurrent money movements queued on those few rows. A
posting now writes, for each account that no rule makes it serialise (no overdraft rule, or one
that it only pays into), a row here with the change instead; a roll-up adds the rows into
ledger_accounts.balance_cents and deletes them in one transaction. An account's balance is
balance_cents + SUM(delta_cents) of its rows here. Nothing to move: no row is pending at upgrade.

Revision ID: 0026
Revises: 0025
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UUIDv7

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ledger_balance_deltas",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("account_id", UUIDv7(), nullable=False),
        sa.Column("posting_id", UUIDv7(), nullable=False),
        sa.Column("delta_cents", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_balance_deltas")),
        sa.UniqueConstraint(
            "posting_id", "account_id", name=op.f("uq_ledger_balance_deltas_posting_id_account_id")
        ),
    )
    op.create_index(
        op.f("ix_ledger_balance_deltas_account_id"), "ledger_balance_deltas", ["account_id"], unique=False
    )


def downgrade() -> None:
    # Roll every pending change into its account first, so the balances stay right without the table.
    op.execute(
        "UPDATE ledger_accounts SET balance_cents = balance_cents + COALESCE(("
        "SELECT SUM(d.delta_cents) FROM ledger_balance_deltas d WHERE d.account_id = ledger_accounts.id), 0)"
    )
    op.drop_index(op.f("ix_ledger_balance_deltas_account_id"), table_name="ledger_balance_deltas")
    op.drop_table("ledger_balance_deltas")
