"""reconciliation_items: who closed a reviewed item, why and when

An operator closes an item queued for review when no money moves in PenPay (a provider fee, a
duplicate settled at the provider): `review_status` becomes RESOLVED and the operator's name and
explanation are kept beside the item (and in the audit chain). The columns stay set if a later
run reopens the item because the provider's record changed: they are the last close's history.

Revision ID: 0024
Revises: 0016
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UtcDateTime

revision: str = "0024"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("reconciliation_items", sa.Column("resolved_by", sa.String(64), nullable=True))
    op.add_column("reconciliation_items", sa.Column("resolution", sa.String(255), nullable=True))
    op.add_column("reconciliation_items", sa.Column("resolved_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    op.drop_column("reconciliation_items", "resolved_at")
    op.drop_column("reconciliation_items", "resolution")
    op.drop_column("reconciliation_items", "resolved_by")
