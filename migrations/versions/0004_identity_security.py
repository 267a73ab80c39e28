"""identity security: refresh_tokens, verification_codes, the audit chain head; append-only
triggers on audit_logs and ledger_entries; existing audit rows linked into the hash chain

Triggers: UPDATE and DELETE on audit_logs and ledger_entries raise, on MariaDB (SIGNAL SQLSTATE
'45000') and SQLite (RAISE(ABORT)). Note for later migrations: a SQLite batch_alter_table on either
table recreates it and silently drops its triggers; re-create them after such a batch.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

from persistence.types import UtcDateTime, UUIDv7

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY_TABLES = ("audit_logs", "ledger_entries")


def _trigger_names(table: str) -> tuple[tuple[str, str], ...]:
    return ((f"trg_{table}_no_update", "UPDATE"), (f"trg_{table}_no_delete", "DELETE"))


def _create_triggers() -> None:
    dialect = op.get_bind().dialect.name
    for table in APPEND_ONLY_TABLES:
        for name, operation in _trigger_names(table):
            message = f"{table} is append-only: {operation} refused"
            if dialect == "sqlite":
                op.execute(
                    f"CREATE TRIGGER {name} BEFORE {operation} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
                )
            else:
                op.execute(
                    f"CREATE TRIGGER {name} BEFORE {operation} ON {table} FOR EACH ROW "
                    f"SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{message}'"
                )


def _drop_triggers() -> None:
    for table in APPEND_ONLY_TABLES:
        for name, _ in _trigger_names(table):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")


def _chain_existing_audit_rows() -> None:
    """Link rows written before the chain existed (their prev_hash was empty) and set the head."""
    from persistence.audit import GENESIS_HASH, HEAD_ID, chain_hash, content_of
    from persistence.types import UtcDateTime as _Utc

    bind = op.get_bind()
    audit = sa.table(
        "audit_logs",
        sa.column("id", sa.BigInteger()),
        sa.column("occurred_at", _Utc()),
        sa.column("actor", sa.String()),
        sa.column("action", sa.String()),
        sa.column("subject_type", sa.String()),
        sa.column("subject_id", sa.String()),
        sa.column("details", sa.Text()),
        sa.column("prev_hash", sa.String()),
        sa.column("row_hash", sa.String()),
    )
    head = sa.table(
        "audit_chain_head",
        sa.column("id", sa.Integer()),
        sa.column("last_audit_id", sa.BigInteger()),
        sa.column("last_hash", sa.String()),
        sa.column("row_count", sa.BigInteger()),
        sa.column("updated_at", _Utc()),
    )
    prev, count, last_id = GENESIS_HASH, 0, None
    from datetime import UTC, datetime

    if context.is_offline_mode():
        # Offline SQL (`--sql`) is for a new database: no audit rows yet, the head starts at genesis.
        op.execute(
            sa.insert(head).values(
                id=HEAD_ID, last_audit_id=None, last_hash=prev, row_count=0, updated_at=datetime.now(UTC)
            )
        )
        return
    for row in bind.execute(sa.select(audit).order_by(audit.c.id)).all():
        content = content_of(
            row.occurred_at, row.actor, row.action, row.subject_type, row.subject_id, row.details
        )
        row_hash = chain_hash(prev, content)
        bind.execute(sa.update(audit).where(audit.c.id == row.id).values(prev_hash=prev, row_hash=row_hash))
        prev, count, last_id = row_hash, count + 1, row.id

    bind.execute(
        sa.insert(head).values(
            id=HEAD_ID, last_audit_id=last_id, last_hash=prev, row_count=count, updated_at=datetime.now(UTC)
        )
    )


def upgrade() -> None:
    op.create_table(
        "refresh_tokens",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("user_id", UUIDv7(), nullable=False),
        sa.Column("family_id", UUIDv7(), nullable=False),
        sa.Column("device_id", sa.String(length=128), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("issued_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_refresh_tokens_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_refresh_tokens_token_hash")),
    )
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_refresh_tokens_family_id"), ["family_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_refresh_tokens_user_id_device_id"), ["user_id", "device_id"], unique=False
        )

    op.create_table(
        "verification_codes",
        sa.Column("id", UUIDv7(), nullable=False),
        sa.Column("user_id", UUIDv7(), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("consumed_at", UtcDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_verification_codes_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_codes")),
    )
    with op.batch_alter_table("verification_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_verification_codes_user_id_purpose"), ["user_id", "purpose"], unique=False
        )

    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("last_audit_id", sa.BigInteger(), nullable=True),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("row_count", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    _chain_existing_audit_rows()
    _create_triggers()


def downgrade() -> None:
    _drop_triggers()
    # Indexes go with their tables (MariaDB refuses to drop one a foreign key still needs).
    op.drop_table("audit_chain_head")
    op.drop_table("verification_codes")
    op.drop_table("refresh_tokens")
