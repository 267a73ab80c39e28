"""audit_pending guarded like audit_logs: no UPDATE, and no DELETE of a record not sealed yet

Between its commit and its seal an audit record waits in audit_pending; without a guard anyone
with DML rights could change it (the chain would seal the altered record) or delete it (the chain
would never see it). Now:
- audit_logs.pending_id (unique; NULL for rows sealed before this migration) names the
  audit_pending row a chain row was sealed from. It is not hashed: older rows keep verifying.
- a trigger refuses every UPDATE of audit_pending;
- a trigger refuses a DELETE of an audit_pending row unless an audit_logs row carries its id and
  its content, byte for byte (the sealer inserts the chain rows before deleting, in one
  transaction, so its delete passes).

SQLite: the column and index are added in place (ALTER TABLE ADD COLUMN): a batch on audit_logs
would recreate it and silently drop 0004's triggers. audit_pending is recreated with AUTOINCREMENT,
since a plain rowid restarts at 1 once the sealer has emptied the table, and a reused id would
both clash with the unique pending_id and let an unsealed row pass the delete guard.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING_ID_INDEX = "ix_audit_logs_pending_id"
NO_UPDATE = "trg_audit_pending_no_update"
NO_UNSEALED_DELETE = "trg_audit_pending_no_unsealed_delete"

# The chain row must hold the record verbatim, not merely name it: a DELETE then never loses a
# record's content, even to someone who can append to audit_logs. (MariaDB compares text through
# the column's collation, which may ignore case: BINARY makes it byte for byte.)
_SAME_RECORD = {
    "sqlite": "l.occurred_at = OLD.occurred_at AND l.actor = OLD.actor AND l.action = OLD.action "
    "AND l.subject_type = OLD.subject_type AND l.subject_id = OLD.subject_id AND l.details = OLD.details",
    "mysql": "l.occurred_at = OLD.occurred_at AND BINARY l.actor = BINARY OLD.actor "
    "AND BINARY l.action = BINARY OLD.action AND BINARY l.subject_type = BINARY OLD.subject_type "
    "AND BINARY l.subject_id = BINARY OLD.subject_id AND BINARY l.details = BINARY OLD.details",
}
_SEALED = "SELECT 1 FROM audit_logs l WHERE l.pending_id = OLD.id AND {same}"

SQLITE_TRIGGERS = (
    "CREATE TRIGGER trg_audit_pending_no_update BEFORE UPDATE ON audit_pending "
    "BEGIN SELECT RAISE(ABORT, 'audit_pending is append-only: UPDATE refused'); END",
    "CREATE TRIGGER trg_audit_pending_no_unsealed_delete BEFORE DELETE ON audit_pending "
    f"WHEN NOT EXISTS ({_SEALED.format(same=_SAME_RECORD['sqlite'])}) "
    "BEGIN SELECT RAISE(ABORT, 'audit_pending: DELETE refused, the record is not sealed yet'); END",
)
MARIADB_TRIGGERS = (
    "CREATE TRIGGER trg_audit_pending_no_update BEFORE UPDATE ON audit_pending FOR EACH ROW "
    "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit_pending is append-only: UPDATE refused'",
    "CREATE TRIGGER trg_audit_pending_no_unsealed_delete BEFORE DELETE ON audit_pending FOR EACH ROW "
    f"IF NOT EXISTS ({_SEALED.format(same=_SAME_RECORD['mysql'])}) THEN "
    "SIGNAL SQLSTATE '45000' "
    "SET MESSAGE_TEXT = 'audit_pending: DELETE refused, the record is not sealed yet'; END IF",
)


def _never_reuse_pending_ids_on_sqlite() -> None:
    # Rebuilding audit_pending (never audit_logs) is safe: it has no triggers yet.
    with op.batch_alter_table(
        "audit_pending", recreate="always", table_kwargs={"sqlite_autoincrement": True}
    ):
        pass


def upgrade() -> None:
    op.add_column("audit_logs", sa.Column("pending_id", sa.BigInteger(), nullable=True))
    op.create_index(PENDING_ID_INDEX, "audit_logs", ["pending_id"], unique=True)
    if op.get_bind().dialect.name == "sqlite":
        _never_reuse_pending_ids_on_sqlite()
        triggers = SQLITE_TRIGGERS
    else:
        triggers = MARIADB_TRIGGERS
    for trigger in triggers:
        _create(trigger)


def _create(trigger: str) -> None:
    if context.is_offline_mode() and op.get_context().dialect.name != "sqlite" and ";" in trigger:
        # Offline SQL goes through the mysql client, which splits at ';': a compound trigger body
        # needs another delimiter there.
        op.get_context().impl.static_output(f"DELIMITER //\n{trigger} //\nDELIMITER ;\n")
    else:
        op.execute(trigger)


def downgrade() -> None:
    # Triggers first: SQLite refuses to drop a column a trigger still names. audit_pending keeps
    # AUTOINCREMENT on SQLite: ids that never repeat are harmless to 0007's code.
    op.execute(f"DROP TRIGGER IF EXISTS {NO_UNSEALED_DELETE}")
    op.execute(f"DROP TRIGGER IF EXISTS {NO_UPDATE}")
    op.drop_index(PENDING_ID_INDEX, table_name="audit_logs")
    # Outside batch mode, SQLite (>= 3.35) drops the column in place: 0004's triggers stay.
    op.drop_column("audit_logs", "pending_id")
