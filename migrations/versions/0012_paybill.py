"""paybill_references and c2b_payments: paybill (C2B) deposits

`paybill_references`: each user's deposit reference, the account number (BillRefNumber) they pay
the paybill with. `c2b_payments`: one row per M-Pesa TransID, the inbox of paybill payments: the
validation PenPay answered, the confirmation that followed, and where the money went (a DEPOSIT
transaction, or SUSPENSE for a person). The MSISDN is kept masked only.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UtcDateTime, UUIDv7

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "paybill_references",
        sa.Column("reference", sa.String(length=16), nullable=False),
        sa.Column("user_id", UUIDv7(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("reference"),
    )
    op.create_index("ux_paybill_references_user_id", "paybill_references", ["user_id"], unique=True)
    op.create_table(
        "c2b_payments",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("trans_id", sa.String(length=32), nullable=False),
        sa.Column("shortcode", sa.String(length=16), nullable=False),
        sa.Column("bill_ref", sa.String(length=32), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("amount_currency", sa.String(length=3), nullable=False),
        sa.Column("msisdn_shown", sa.String(length=24), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result_code", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.String(length=255), nullable=True),
        sa.Column("user_id", UUIDv7(), nullable=True),
        sa.Column("transaction_id", UUIDv7(), nullable=True),
        sa.Column("raw_validation", sa.Text(), nullable=True),
        sa.Column("raw_confirmation", sa.Text(), nullable=True),
        sa.Column("proposed_user_id", UUIDv7(), nullable=True),
        sa.Column("proposed_by", sa.String(length=64), nullable=True),
        sa.Column("resolved_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["transaction_id"], ["transactions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ux_c2b_payments_trans_id", "c2b_payments", ["trans_id"], unique=True)
    op.create_index("ix_c2b_payments_status", "c2b_payments", ["status", "updated_at"])


def downgrade() -> None:
    op.drop_table("c2b_payments")
    op.drop_table("paybill_references")
