"""The journal protocol's steps both transports take on a row: claim it, replay a final one, take
over an earlier attempt's, answer "not known yet", record "not executed" or a failed send."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from deriv_gateway import journal as jn
from deriv_gateway.logs import get_logger
from deriv_gateway.money_call import MoneyCall, MoneyResult
from deriv_gateway.protocol import errors

log = get_logger("deriv_gateway.journal_steps")


class JournalSteps:
    def __init__(self, journal: jn.Journal, *, unknown_settle: float) -> None:
        self.journal = journal
        self.unknown_settle = unknown_settle

    async def claim(self, call: MoneyCall) -> tuple[bool, jn.Operation]:
        try:
            return await self.journal.claim(
                operation_id=call.operation_id,
                kind=call.kind,
                client_loginid=call.client_loginid,
                amount_cents=call.amount_cents,
                currency=call.currency,
                description=call.description,
                token=call.token,
            )
        except jn.StaleFencingToken:
            raise errors.NotLeader("a newer leader has written to the journal") from None

    @staticmethod
    def replay(row: jn.Operation) -> MoneyResult:
        if row.status == jn.FAILED:
            raise errors.decode_error(
                {"error": {"code": row.error_code or "DerivError", "message": row.error_message or ""}}
            )
        result = row.result or {}
        return MoneyResult(
            operation_id=row.operation_id,
            deriv_transaction_id=int(row.deriv_transaction_id or 0),
            client_loginid=row.client_loginid,
            amount_cents=row.amount_cents,
            currency=row.currency,
            counterparty_name=str(result.get("counterparty_name") or ""),
            replayed=True,
            resolved_from_statement=bool(result.get("resolved_from_statement")),
        )

    async def take_over(self, row: jn.Operation, token: int) -> None:
        try:
            await self.journal.take_over(row.operation_id, token)
        except jn.StaleFencingToken:
            raise errors.NotLeader("a newer leader owns this operation") from None

    def unknown(self, row: jn.Operation, age: float) -> errors.OutcomeUnknown:
        wait = self.unknown_settle - age
        return errors.OutcomeUnknown(
            f"outcome of operation {row.operation_id} is not yet known; retry in {wait:.0f}s",
            code="OutcomeUnknown",
            details={"retry_after": wait},
        )

    async def mark_not_executed(self, row: jn.Operation, token: int, age: float) -> None:
        """SENDING and absent from the statement after the settle window -> NOT_SENT (may be sent later)."""
        try:
            await self.journal.finish(
                row.operation_id,
                token,
                jn.NOT_SENT,
                error_code="NOT_EXECUTED",
                error_message=f"not in the statement {age:.0f}s after the last send",
            )
        except jn.StaleFencingToken:
            raise errors.NotLeader("a newer leader owns this operation") from None
        log.warning("gateway.unknown_resolved_absent", operation_id=row.operation_id, attempts=row.attempts)

    async def finish_quietly(
        self, operation_id: str, token: int, status: str, exc: errors.DerivError
    ) -> None:
        try:
            await self.journal.finish(
                operation_id, token, status, error_code=exc.code, error_message=exc.message
            )
        except jn.StaleFencingToken:
            log.error("gateway.deposed_after_send", operation_id=operation_id)

    async def still_ours(self, operation_id: str, token: int) -> bool:
        """After a failed outcome write: the row is still SENDING under our token (we were not deposed)."""
        row = await self.journal.get(operation_id)
        return row is not None and row.status == jn.SENDING and row.fencing_token == token


def age(row: jn.Operation, scanned_at: datetime) -> float:
    """Seconds from the row's last send (updated_at, not moved by a take-over) to the start of the
    statement scan that did not find it: "absent" only counts for a scan begun a settle window after
    the send, however long the caller waited between that scan and this check."""
    return (scanned_at - row.updated_at).total_seconds()


def retry_details(statement_error: errors.DerivError) -> dict[str, Any] | None:
    """When a refused statement lookup may be asked again: a RateLimit (ours says when; Deriv's does
    not, so a minute), so the caller waits instead of spending an attempt on each refusal."""
    if not isinstance(statement_error, errors.RateLimit):
        return None
    retry_after = (statement_error.details or {}).get("retry_after")
    return {"retry_after": float(retry_after) if isinstance(retry_after, int | float) else 60.0}
