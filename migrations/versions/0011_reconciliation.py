"""reconciliation_runs, reconciliation_items, reconciliation_cursors: reconciliation against the providers

Each run (a window of time, read from Deriv's statement and M-Pesa's Pull Transactions, Transaction
Status and Account Balance) and each item it classified, once per provider record or evidence row
(`item_key` unique: a re-run updates, never duplicates), with the cursor per source.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UtcDateTime, UUIDv7

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("window_from", UtcDateTime(), nullable=False),
        sa.Column("window_to", UtcDateTime(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("unexplained", sa.Integer(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_reconciliation_runs"),
    )
    op.create_index("ix_reconciliation_runs_started_at", "reconciliation_runs", ["started_at"])
    op.create_table(
        "reconciliation_items",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("item_key", sa.String(length=160), nullable=False),
        sa.Column("first_run_id", UUIDv7(), nullable=False),
        sa.Column("last_run_id", UUIDv7(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("item_class", sa.String(length=32), nullable=False),
        sa.Column("provider_ref", sa.String(length=64), nullable=True),
        sa.Column("transaction_id", UUIDv7(), nullable=True),
        sa.Column("provider_amount_cents", sa.BigInteger(), nullable=True),
        sa.Column("provider_amount_currency", sa.String(length=3), nullable=True),
        sa.Column("penpay_amount_cents", sa.BigInteger(), nullable=True),
        sa.Column("penpay_amount_currency", sa.String(length=3), nullable=True),
        sa.Column("occurred_at", UtcDateTime(), nullable=True),
        sa.Column("detail", sa.String(length=500), nullable=False),
        sa.Column("review_status", sa.String(length=16), nullable=False),
        sa.Column("suspense_posting_id", UUIDv7(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["first_run_id"],
            ["reconciliation_runs.id"],
            name="fk_reconciliation_items_first_run_id_reconciliation_runs",
        ),
        sa.ForeignKeyConstraint(
            ["last_run_id"],
            ["reconciliation_runs.id"],
            name="fk_reconciliation_items_last_run_id_reconciliation_runs",
        ),
        sa.ForeignKeyConstraint(
            ["suspense_posting_id"],
            ["ledger_postings.id"],
            name="fk_reconciliation_items_suspense_posting_id_ledger_postings",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_reconciliation_items"),
        sa.UniqueConstraint("item_key", name="uq_reconciliation_items_item_key"),
    )
    op.create_index("ix_reconciliation_items_last_run_id", "reconciliation_items", ["last_run_id"])
    op.create_index(
        "ix_reconciliation_items_item_class_review_status",
        "reconciliation_items",
        ["item_class", "review_status"],
    )
    op.create_table(
        "reconciliation_cursors",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("reconciled_to", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("source", name="pk_reconciliation_cursors"),
    )


def downgrade() -> None:
    op.drop_table("reconciliation_items")
    op.drop_table("reconciliation_cursors")
    op.drop_table("reconciliation_runs")
