"""transactions.saga_due_at: when time alone next gives the saga something to do

The saga writes it with the transaction it leaves waiting (in the same UPDATE), and the sweepers of
every worker pass over the transaction until then, instead of each reading it to find it waiting.
NULL (every other writer, and rows before this migration): no promise, the sweeper looks as before.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UtcDateTime

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.add_column(sa.Column("saga_due_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.drop_column("saga_due_at")
