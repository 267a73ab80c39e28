"""reconciliation_items: who closed a reviewed item, why and when; a write-off under four eyes

An operator closes an item queued for review when no money moves in PenPay (a provider fee, a
duplicate settled at the provider): `review_status` becomes RESOLVED and the operator's name and
explanation are kept beside the item (and in the audit chain). The columns stay set if a later
run reopens the item because the provider's record changed: they are the last close's history.

An item whose money reconciliation holds in SUSPENSE is closed by a write-off instead, proposed by
one operator (`write_off_proposed_by`, `write_off_reason`, `write_off_proposed_at`; NULL again if
rejected) and approved by another person, who books it once (`write_off_posting_id`).

Revision ID: 0024
Revises: 0022
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UtcDateTime, UUIDv7

revision: str = "0024"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch: SQLite cannot add a foreign key by ALTER (MariaDB gets plain ALTERs)
    with op.batch_alter_table("reconciliation_items") as batch:
        batch.add_column(sa.Column("resolved_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("resolution", sa.String(255), nullable=True))
        batch.add_column(sa.Column("resolved_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("write_off_proposed_by", sa.String(64), nullable=True))
        batch.add_column(sa.Column("write_off_reason", sa.String(255), nullable=True))
        batch.add_column(sa.Column("write_off_proposed_at", UtcDateTime(), nullable=True))
        batch.add_column(sa.Column("write_off_posting_id", UUIDv7(), nullable=True))
        batch.create_foreign_key(
            "fk_reconciliation_items_write_off_posting_id_ledger_postings",
            "ledger_postings",
            ["write_off_posting_id"],
            ["id"],
        )


def downgrade() -> None:
    with op.batch_alter_table("reconciliation_items") as batch:
        batch.drop_constraint(
            "fk_reconciliation_items_write_off_posting_id_ledger_postings", type_="foreignkey"
        )
        for column in (
            "write_off_posting_id",
            "write_off_proposed_at",
            "write_off_reason",
            "write_off_proposed_by",
            "resolved_at",
            "resolution",
            "resolved_by",
        ):
            batch.drop_column(column)
