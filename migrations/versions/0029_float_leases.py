"""float_leases: a process's allowance out of a no-overdraft float, booked without its row

Every deposit's credit wrote the Deriv agent float's row last, conditional on its floor, and held
the row to its COMMIT: two credits at once queued there (about one row-lock wait per deposit, all
of the waits the bench counts). A process now takes an allowance of the float's headroom in a short
transaction of its own (float_leases; the float's leased_cents holds the total of the unretired
ones), and books money out of the float within it as a pending change (ledger_balance_deltas),
holding only a shared lock on its lease's row. A booking outside every lease keeps the floor with
the leased total counted as spent; retiring a lease rolls the float's pending changes in and gives
its allowance back. Nothing to move at upgrade: no lease exists.

Revision ID: 0029
Revises: 0028
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UtcDateTime, UUIDv7

revision: str = "0029"
down_revision: str | None = "0028"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_accounts") as batch:
        batch.add_column(sa.Column("leased_cents", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "float_leases",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("account_id", UUIDv7(), nullable=False),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("allowance_cents", sa.BigInteger(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("retired_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_float_leases")),
    )
    op.create_index(
        op.f("ix_float_leases_account_id_retired_at"), "float_leases", ["account_id", "retired_at"]
    )


def downgrade() -> None:
    # Stop every process first (as for the upgrade). Dropping the leases gives their allowances back;
    # what they booked stays pending in ledger_balance_deltas, part of the floats' balances.
    op.drop_index(op.f("ix_float_leases_account_id_retired_at"), table_name="float_leases")
    op.drop_table("float_leases")
    with op.batch_alter_table("ledger_accounts") as batch:
        batch.drop_column("leased_cents")
