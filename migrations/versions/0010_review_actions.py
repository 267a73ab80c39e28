"""review_actions: operators' proposals on transactions under review, and their four-eyes decisions

One row per proposal (resolve as completed, refund, fail, retry): who proposed it, with what
evidence, and who approved, rejected or saw it refused. `open_transaction_id` holds the
transaction id while the proposal is open and NULL once it is decided: its unique index allows
one open proposal per transaction (NULLs never collide, on MariaDB and SQLite alike).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UtcDateTime, UUIDv7

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "review_actions",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("transaction_id", UUIDv7(), nullable=False),
        sa.Column("open_transaction_id", UUIDv7(), nullable=True),
        sa.Column("transaction_version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("deriv_transaction_id", sa.BigInteger(), nullable=True),
        sa.Column("mpesa_receipt", sa.String(length=32), nullable=True),
        sa.Column("proposed_by", sa.String(length=64), nullable=False),
        sa.Column("proposed_at", UtcDateTime(), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", UtcDateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["transaction_id"], ["transactions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_review_actions_transaction_id", "review_actions", ["transaction_id"])
    op.create_index("ix_review_actions_status", "review_actions", ["status", "proposed_at"])
    op.create_index(
        "ux_review_actions_open_transaction_id", "review_actions", ["open_transaction_id"], unique=True
    )


def downgrade() -> None:
    # The indexes go with the table (MariaDB will not drop one its foreign key needs on its own).
    op.drop_table("review_actions")
