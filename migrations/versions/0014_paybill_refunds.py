"""paybill_refunds: a suspense payment given back to its payer by Daraja's Reversal API

One row per reversal request PenPay made or means to make (four eyes: proposed by one person,
approved by another). The OriginatorConversationID is chosen when the refund is proposed and is the
one id of the request ever after (UNIQUE): an unknown outcome is asked about by Transaction Status
under it, never sent again. At most one open refund per TransID is kept by the application under the
c2b_payments row lock; `posting_id` is the `Dr SUSPENSE / Cr MPESA_FLOAT` posting booked once M-Pesa
confirmed the reversal.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UtcDateTime, UUIDv7

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "paybill_refunds",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("trans_id", sa.String(length=32), nullable=False),
        sa.Column("originator_conversation_id", sa.String(length=64), nullable=False),
        sa.Column("amount_cents", sa.BigInteger(), nullable=False),
        sa.Column("amount_currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("proposed_by", sa.String(length=64), nullable=False),
        sa.Column("approved_by", sa.String(length=64), nullable=True),
        sa.Column("answered_ocid", sa.String(length=64), nullable=True),
        sa.Column("conversation_id", sa.String(length=64), nullable=True),
        sa.Column("reversal_receipt", sa.String(length=32), nullable=True),
        sa.Column("result_code", sa.String(length=32), nullable=True),
        sa.Column("result_desc", sa.String(length=255), nullable=True),
        sa.Column("raw_result", sa.Text(), nullable=True),
        sa.Column("posting_id", UUIDv7(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["posting_id"], ["ledger_postings.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ux_paybill_refunds_ocid", "paybill_refunds", ["originator_conversation_id"], unique=True)
    op.create_index("ux_paybill_refunds_receipt", "paybill_refunds", ["reversal_receipt"], unique=True)
    op.create_index("ix_paybill_refunds_trans_id", "paybill_refunds", ["trans_id", "status"])


def downgrade() -> None:
    op.drop_table("paybill_refunds")
