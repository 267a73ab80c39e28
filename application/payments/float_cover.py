"""Float cover at initiation: a payment is taken only when the float that must pay it out holds the
amount now (the ledger's live balance, reservations of payments in flight already deducted).

Why a synchronous check here and not a flag set by the FloatLow consumer: the balance read in the
use case is the truth at that moment, so a top-up (`penpay float fund`) is honoured by the very next
request and nothing depends on a consumer being up or an event arriving. A payment accepted here can
still find the float short later (others took it meanwhile): the saga then waits for a top-up
(FLOAT_WAIT, FloatLow), as before.
"""

from __future__ import annotations

from typing import Protocol

from application.payments.errors import FloatInsufficient
from domain.payments.status import TransactionType
from domain.wallet.account_kind import AccountKind
from domain.wallet.ledger_account import system_account_code
from domain.wallet.money import Currency, Money
from domain.wallet.ports import LedgerRepository


class _Ledgered(Protocol):
    @property
    def ledger(self) -> LedgerRepository: ...


# Which float pays each flow out, and in words for the customer.
PAYING_FLOAT = {
    TransactionType.DEPOSIT: (AccountKind.DERIV_AGENT_FLOAT, "to your Deriv account", "Nothing was charged"),
    TransactionType.WITHDRAWAL: (
        AccountKind.MPESA_FLOAT,
        "by M-Pesa",
        "Nothing was taken from your Deriv account",
    ),
}


async def require_float_cover(
    uow: _Ledgered, flow: TransactionType, payout: Money, *, balance_minor: int | None = None
) -> None:
    """Raise FloatInsufficient when the float paying `flow` out holds less than `payout` (read only;
    the caller does not commit). `balance_minor`: the float's balance as the caller read it in the
    same transaction (float_code names the row); None: read here (the account made if missing)."""
    kind, where, untouched = PAYING_FLOAT[flow]
    if balance_minor is None:
        account = await uow.ledger.get_or_create_account(kind=kind, currency=payout.currency)
        balance_minor = account.balance_minor
    if balance_minor < payout.amount_minor:
        raise FloatInsufficient(
            f"PenPay cannot take this {flow.value.lower()} right now: it cannot pay out {payout} {where} "
            f"at the moment. {untouched}; please try again later or with a smaller amount.",
            float_kind=kind.value,
        )


def float_code(flow: TransactionType, currency: Currency) -> str:
    """The ledger code of the float that pays `flow` out in `currency` (for a caller's own read)."""
    return system_account_code(PAYING_FLOAT[flow][0], currency)
