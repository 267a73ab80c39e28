"""domain_events: the M-Pesa adapter's B2C event names become the aggregate's (spec names)

B2C answers are now recorded by the Transaction aggregate, whose typed events carry the spec's
names (PEC 5). Outbox rows the adapter wrote under its own names and no relay has published yet are
renamed, so a worker that knows only the new names still wakes on them:

  MpesaB2CResultRecorded  (a B2C result)           -> MpesaCallbackReceived
  MpesaB2CResultRecorded  (a Transaction Status
                           final failure)           -> MpesaDisbursementFailed
  MpesaB2COutcomeUnknown                            -> MpesaDisbursementOutcomeUnknown
  MpesaB2CConfirmed                                 -> MpesaDisbursementCompleted

The two kinds of MpesaB2CResultRecorded are told apart by their payload: only a B2C result's holds
"result_code". Only rows of the adapter's stream (penpay.mpesa) are touched: the aggregate's events go
to penpay.payments, so the downgrade renames back exactly these rows. Payloads keep their old shape
(the saga reads only the aggregate id); messages already in Redis keep their old names, which the
saga consumer still accepts (workers/sagas.py).

Revision ID: 0025
Revises: 0024
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STREAM = "penpay.mpesa"
_EVENTS = sa.table(
    "domain_events",
    sa.column("stream", sa.String),
    sa.column("published_at", sa.DateTime),
    sa.column("event_type", sa.String),
    sa.column("payload", sa.Text),
)
# a B2C result's payload holds its ResultCode; a Transaction Status failure's does not
_RESULT = sa.func.instr(_EVENTS.c.payload, '"result_code"')
# (old name, new name, which rows of it: a condition, or None for all)
RENAMES: tuple[tuple[str, str, sa.ColumnElement[bool] | None], ...] = (
    ("MpesaB2CResultRecorded", "MpesaCallbackReceived", _RESULT > 0),
    ("MpesaB2CResultRecorded", "MpesaDisbursementFailed", _RESULT == 0),
    ("MpesaB2COutcomeUnknown", "MpesaDisbursementOutcomeUnknown", None),
    ("MpesaB2CConfirmed", "MpesaDisbursementCompleted", None),
)


def _rename(old: str, new: str, condition: sa.ColumnElement[bool] | None) -> None:
    statement = (
        _EVENTS.update()
        .where(_EVENTS.c.stream == STREAM, _EVENTS.c.published_at.is_(None), _EVENTS.c.event_type == old)
        .values(event_type=new)
    )
    op.execute(statement if condition is None else statement.where(condition))


def upgrade() -> None:
    for old, new, condition in RENAMES:
        _rename(old, new, condition)


def downgrade() -> None:
    # The new names never occur on the adapter's stream but by this upgrade: renamed back as found.
    for old, new, _ in RENAMES:
        _rename(new, old, None)
