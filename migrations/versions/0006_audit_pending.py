"""audit_pending: audit records committed with their action, chained into audit_logs by the sealer

The chain head is no longer locked inside every financial transaction (that serialised every
commit that wrote an audit row); the records wait here and are chained right after the commit.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from persistence.types import UtcDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_pending",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("subject_type", sa.String(length=32), nullable=False),
        sa.Column("subject_id", sa.String(length=64), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_pending")),
    )


def _seal_what_is_pending() -> None:
    """Before 0005's code takes over (it writes audit_logs directly): chain every record still
    waiting, so a downgrade loses none."""
    from datetime import UTC, datetime

    from persistence.audit import GENESIS_HASH, HEAD_ID, chained
    from persistence.types import UtcDateTime as _Utc

    bind = op.get_bind()
    columns = ("occurred_at", "actor", "action", "subject_type", "subject_id", "details")
    pending = sa.table(
        "audit_pending", sa.column("id", sa.BigInteger()), sa.column("occurred_at", _Utc()),
        *(sa.column(name, sa.String()) for name in columns[1:]),
    )  # fmt: skip
    audit = sa.table(
        "audit_logs", sa.column("occurred_at", _Utc()),
        *(sa.column(name, sa.String()) for name in columns[1:]),
        sa.column("prev_hash", sa.String()), sa.column("row_hash", sa.String()),
    )  # fmt: skip
    head = sa.table(
        "audit_chain_head", sa.column("id", sa.Integer()), sa.column("last_audit_id", sa.BigInteger()),
        sa.column("last_hash", sa.String()), sa.column("row_count", sa.BigInteger()),
        sa.column("updated_at", _Utc()),
    )  # fmt: skip
    rows = bind.execute(sa.select(pending).order_by(pending.c.id)).all()
    if not rows:
        return
    current = bind.execute(sa.select(head).where(head.c.id == HEAD_ID)).first()
    prev = current.last_hash if current else GENESIS_HASH
    count = current.row_count if current else 0
    for row in rows:
        linked = chained(row._mapping, prev)
        bind.execute(sa.insert(audit).values(**linked))
        prev = linked["row_hash"]
    last_id = bind.execute(sa.text("SELECT MAX(id) FROM audit_logs")).scalar_one()
    values = {"last_audit_id": last_id, "last_hash": prev, "row_count": count + len(rows),
              "updated_at": datetime.now(UTC)}  # fmt: skip
    if current is None:
        bind.execute(sa.insert(head).values(id=HEAD_ID, **values))
    else:
        bind.execute(sa.update(head).where(head.c.id == HEAD_ID).values(**values))


def downgrade() -> None:
    _seal_what_is_pending()
    op.drop_table("audit_pending")
