"""saga_steps.retry_at: a call held back unsent (rate limit) is retried then, without using an attempt

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UtcDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("saga_steps") as batch:
        batch.add_column(sa.Column("retry_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("saga_steps") as batch:
        batch.drop_column("retry_at")
