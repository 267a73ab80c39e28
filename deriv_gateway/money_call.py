"""The money vocabulary both transports share (v3 WebSocket and REST): one money operation under a
leadership term (MoneyCall), its result, and the two refusals of the operation id itself."""

from __future__ import annotations

from dataclasses import dataclass

from deriv_gateway import journal as jn


class OperationConflict(Exception):
    """The operation id was used before with different parameters."""


class OperationNotExecuted(Exception):
    """resolve_only: the operation did not execute at Deriv (and the journal now says so)."""


@dataclass(frozen=True, slots=True)
class MoneyCall:
    """One money operation as its journal row holds it and Deriv's statement shows it, with the
    fencing token of the term that writes it (every journal write after the claim carries it)."""

    operation_id: str
    kind: str  # "transfer" | "withdraw"
    client_loginid: str  # "" when not known yet (resolving with no row and no client session)
    amount_cents: int
    currency: str
    description: str  # our reference, as Deriv's statement shows it
    token: int

    @classmethod
    def of_row(cls, row: jn.Operation, token: int) -> MoneyCall:
        return cls(
            row.operation_id,
            row.kind,
            row.client_loginid,
            row.amount_cents,
            row.currency,
            row.description,
            token,
        )


@dataclass(frozen=True, slots=True)
class MoneyResult:
    operation_id: str
    deriv_transaction_id: int
    client_loginid: str
    amount_cents: int
    currency: str
    counterparty_name: str
    replayed: bool
    resolved_from_statement: bool
