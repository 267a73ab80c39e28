"""Audit records of financial events written by the database, from the outbox row

Every unit of work that raised a financial event (streams penpay.payments and penpay.wallet) sent
the event twice: once as its outbox row (domain_events) and once as an audit record (audit_pending)
holding the same fields, a second INSERT on every money step. Now the outbox row carries the actor,
and a trigger on domain_events writes the audit record in the same statement, so the record cannot
be left out by any writer of financial events, and costs no round trip. The record is what the
application wrote before: occurred_at, actor, the event type as action, the aggregate as subject,
and as details the payload with the event's id added under "event_id" (first instead of sorted in
among the payload's keys; the chain hashes the stored text, whatever its order).

An outbox row of a financial event with no actor fails its insert (audit_pending.actor is NOT
NULL): no financial event is written without saying who caused it. Rows written before keep NULL.

Revision ID: 0028
Revises: 0027
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGER = "trg_domain_events_audit_financial"
# persistence.audit.FINANCIAL_CONTEXTS as streams, frozen here as a migration must be.
_FINANCIAL = "NEW.stream IN ('penpay.payments', 'penpay.wallet')"

# The event id (BINARY(16)) as Python's str(uuid) writes it: 8-4-4-4-12 lower-case hex.
_ID_TEXT = {
    "sqlite": "lower(substr(hex(NEW.id), 1, 8) || '-' || substr(hex(NEW.id), 9, 4) || '-' || "
    "substr(hex(NEW.id), 13, 4) || '-' || substr(hex(NEW.id), 17, 4) || '-' || substr(hex(NEW.id), 21))",
    "mysql": "LOWER(INSERT(INSERT(INSERT(INSERT(HEX(NEW.id), 9, 0, '-'), 14, 0, '-'), 19, 0, '-'), "
    "24, 0, '-'))",
}
# {"event_id": "<id>", ...the payload's members}: the payload is a JSON object's text.
_DETAILS = {
    "sqlite": "'{\"event_id\":\"' || {id} || '\"' || "
    "CASE WHEN NEW.payload = '{}' THEN '}' ELSE ',' || substr(NEW.payload, 2) END",
    "mysql": "CONCAT('{\"event_id\":\"', {id}, '\"', "
    "IF(NEW.payload = '{}', '}', CONCAT(',', SUBSTRING(NEW.payload, 2))))",
}
_INSERT = (
    "INSERT INTO audit_pending (occurred_at, actor, action, subject_type, subject_id, details) "
    "VALUES (NEW.occurred_at, NEW.actor, NEW.event_type, NEW.aggregate_type, NEW.aggregate_id, {details})"
)


def trigger_sql(dialect: str) -> str:
    details = _DETAILS[dialect].replace("{id}", _ID_TEXT[dialect])
    insert = _INSERT.format(details=details)
    head = f"CREATE TRIGGER {TRIGGER} AFTER INSERT ON domain_events"
    if dialect == "sqlite":
        return f"{head} WHEN {_FINANCIAL} BEGIN {insert}; END"
    return f"{head} FOR EACH ROW IF {_FINANCIAL} THEN {insert}; END IF"


def upgrade() -> None:
    # In place on SQLite (ADD COLUMN): a batch rebuild would be needless here.
    op.add_column("domain_events", sa.Column("actor", sa.String(64), nullable=True))
    dialect = op.get_context().dialect.name
    sql = trigger_sql("sqlite" if dialect == "sqlite" else "mysql")
    if context.is_offline_mode() and dialect != "sqlite":
        # The mysql client splits at ';': a compound trigger body needs another delimiter there.
        op.get_context().impl.static_output(f"DELIMITER //\n{sql} //\nDELIMITER ;\n")
    else:
        op.execute(sql)


def downgrade() -> None:
    # 0027's code writes the records itself again; the trigger goes first, as it names the column.
    op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER}")
    op.drop_column("domain_events", "actor")
