"""kyc_attestations: an operator's proposed KYC for a REST-only user, and its four-eyes decision

One row per proposal: the identity the operator read on the user's documents (names, date of
birth, residence, citizenship) as ONE AES-GCM ciphertext with its key id beside it, as the
KycSnapshot is kept (user_compliance.kyc_snapshot_enc); where the documents are (a ticket or
document id, no personal data); who proposed it and who approved, rejected or saw it refused.
`open_user_id` holds the user id while the proposal is open and NULL once it is decided: its
unique index allows one open proposal per user (NULLs never collide, on MariaDB and SQLite).

Revision ID: 0016
Revises: 0014
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UtcDateTime, UUIDv7

revision: str = "0016"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kyc_attestations",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("user_id", UUIDv7(), nullable=False),
        sa.Column("open_user_id", UUIDv7(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("identity_enc", sa.LargeBinary(), nullable=False),
        sa.Column("pii_key_id", sa.String(length=32), nullable=False),
        sa.Column("evidence", sa.String(length=128), nullable=False),
        sa.Column("proposed_by", sa.String(length=64), nullable=False),
        sa.Column("proposed_at", UtcDateTime(), nullable=False),
        sa.Column("decided_by", sa.String(length=64), nullable=True),
        sa.Column("decided_at", UtcDateTime(), nullable=True),
        sa.Column("outcome", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_kyc_attestations_user_id", "kyc_attestations", ["user_id"])
    op.create_index("ix_kyc_attestations_status", "kyc_attestations", ["status", "proposed_at"])
    op.create_index("ux_kyc_attestations_open_user_id", "kyc_attestations", ["open_user_id"], unique=True)


def downgrade() -> None:
    # The indexes go with the table (MariaDB will not drop one its foreign key needs on its own).
    op.drop_table("kyc_attestations")
