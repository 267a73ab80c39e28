"""deriv_accounts: a new-API (REST) binding's OAuth refresh token and access-token expiry

A user bound to Deriv's REST API holds an OAuth2 access token that expires (3600 s in Deriv's
example) and, where Deriv issues one, a refresh token; both are kept encrypted like the v3 token
(same key id column: they are always written together). A REST account's deriv_login_id is its
"@nickname" (no loginid carries over to the new API), so the column and its uniqueness stay.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UtcDateTime

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deriv_accounts") as batch:
        batch.add_column(sa.Column("refresh_token_enc", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("token_expires_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deriv_accounts") as batch:
        batch.drop_column("token_expires_at")
        batch.drop_column("refresh_token_enc")
