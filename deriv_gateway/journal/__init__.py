"""The write-ahead journal of money-moving Deriv calls (table `deriv_gateway_operations`).

Row life: SENDING (committed before the frame leaves) -> DONE | FAILED | NOT_SENT.
- DONE / FAILED are final: a repeated call with the same operation id gets the stored result.
- NOT_SENT: the frame never reached Deriv's backend (not written, or refused before dispatch:
  RateLimit, validation, auth); sending again is safe.
- SENDING found by anyone but the request that wrote it means "outcome unknown": look in the
  statement before anything else.
The primary key decides between concurrent inserts (across processes). Every write after the insert
carries the writer's fencing token in its WHERE clause, so a deposed leader cannot record.

The fence: one reserved row (FENCE_ID, outside the operation id pattern) holds the highest fencing
token seen by this journal. Every write that may lead to a send (claim, take over, resend) raises it
to the writer's token, or is refused when it is already higher, in the same transaction as the write
itself, so a deposed leader cannot start an operation once a newer leader has written anything.

The modules: records (a row, its statuses, the refusals), store (the Journal), group_commit (the
batching both databases share), mariadb and sqlite (a batch committed on each, in raw SQL).
"""

from deriv_gateway.journal.records import (
    DONE,
    FAILED,
    FENCE_ID,
    NOT_SENT,
    SENDING,
    JournalClosed,
    Operation,
    StaleFencingToken,
)
from deriv_gateway.journal.store import Journal

# The journal's face: what the gateway, the REST transport and the tests use (`journal.Journal`,
# `journal.SENDING`, ...); the modules behind it are its own.
__all__ = [
    "DONE",
    "FAILED",
    "FENCE_ID",
    "NOT_SENT",
    "SENDING",
    "Journal",
    "JournalClosed",
    "Operation",
    "StaleFencingToken",
]
