"""ledger_entries.account_id: no foreign key to ledger_accounts

Inserting an entry took a shared lock on its account's row for the foreign key's check, held to
the commit: every deposit's entries share-locked the floats, FX and FX_SPREAD for its whole
transaction. A float booked without its locked read (its change written last, conditional on its
floor) then deadlocked with any other booking that had share-locked it first, and the roll-up,
which skips locked accounts, found the hot ones locked under load. Accounts are never deleted, a
booking checks every account it names before it writes (UnknownLedgerAccount), and the
consistency checker reports any entry whose account does not exist (UNKNOWN_ACCOUNT). The index
on (account_id, created_at) stays. On MariaDB, dropping a foreign key changes only metadata.

Revision ID: 0027
Revises: 0026
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0027"
down_revision: str | None = "0026"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FK = "fk_ledger_entries_account_id_ledger_accounts"
# 0004's append-only triggers: SQLite's batch rebuilds the table, and its triggers go with it.
_TRIGGERS = (("trg_ledger_entries_no_update", "UPDATE"), ("trg_ledger_entries_no_delete", "DELETE"))


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        op.drop_constraint(_FK, "ledger_entries", type_="foreignkey")
        return
    with op.batch_alter_table("ledger_entries") as batch:  # SQLite cannot drop one by ALTER
        batch.drop_constraint(_FK, type_="foreignkey")
    _append_only_again()


def downgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        op.create_foreign_key(_FK, "ledger_entries", "ledger_accounts", ["account_id"], ["id"])
        return
    with op.batch_alter_table("ledger_entries") as batch:
        batch.create_foreign_key(_FK, "ledger_accounts", ["account_id"], ["id"])
    _append_only_again()


def _append_only_again() -> None:
    for name, operation in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute(
            f"CREATE TRIGGER {name} BEFORE {operation} ON ledger_entries "
            f"BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only: {operation} refused'); END"
        )
