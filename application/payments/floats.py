"""Float funding: the operator's money put into (or taken out of) a float account.

The floats are no-overdraft ledger accounts mirroring real balances (the Deriv agent account,
the M-Pesa B2C shortcode); a payment that would overdraw one waits (FloatLow) until funded.
"""

from __future__ import annotations

from application.ledger import book
from application.payments import bookings
from application.unit_of_work import UnitOfWork
from domain.wallet.account_kind import AccountKind
from domain.wallet.money import Money

FLOAT_KINDS = (AccountKind.DERIV_AGENT_FLOAT, AccountKind.MPESA_FLOAT)


async def fund_float(uow: UnitOfWork, kind: AccountKind, amount: Money, note: str) -> None:
    """Book the funding inside `uow` and audit it (the caller commits)."""
    if kind not in FLOAT_KINDS:
        raise ValueError(f"{kind} is not a float account")
    posting = await bookings.float_funding(uow.ledger, kind, amount, note)
    await book(uow, posting)
    uow.audit(
        action="float.funded",
        subject_type="LedgerAccount",
        subject_id=kind.value,
        details={"amount_minor": amount.amount_minor, "currency": amount.currency.value, "note": note},
    )
