"""mpesa_callback_reviews: callbacks kept for a person, never acted on automatically

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UtcDateTime, UUIDv7

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mpesa_callback_reviews",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=255), nullable=True),
        sa.Column("correlation_id", sa.String(length=64), nullable=True),
        sa.Column("transaction_id", UUIDv7(), nullable=True),
        sa.Column("remote_addr", sa.String(length=45), nullable=True),
        sa.Column("raw_body", sa.LargeBinary(), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("received_at", UtcDateTime(), nullable=False),
        sa.Column("resolved_at", UtcDateTime(), nullable=True),
        sa.Column("resolved_by", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_mpesa_callback_reviews_transaction_id_transactions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mpesa_callback_reviews")),
    )
    with op.batch_alter_table("mpesa_callback_reviews") as batch_op:
        batch_op.create_index(batch_op.f("ix_mpesa_callback_reviews_correlation_id"), ["correlation_id"])
        batch_op.create_index(
            batch_op.f("ix_mpesa_callback_reviews_status_received_at"), ["status", "received_at"]
        )


def downgrade() -> None:
    op.drop_table("mpesa_callback_reviews")
