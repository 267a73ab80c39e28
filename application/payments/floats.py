"""Float funding: the operator's money put into (or taken out of) a float account.

The floats are no-overdraft ledger accounts mirroring real balances (the Deriv agent account,
the M-Pesa B2C shortcode); a payment that would overdraw one waits (FloatLow) until funded.
"""

from __future__ import annotations

from collections.abc import Mapping

from application.ledger import book
from application.payments import bookings
from application.unit_of_work import UnitOfWork
from domain.wallet.account_kind import AccountKind
from domain.wallet.money import Currency, Money

FLOAT_KINDS = (AccountKind.DERIV_AGENT_FLOAT, AccountKind.MPESA_FLOAT)
# The system accounts every report lists, opened with the floats (also made on first use).
SYSTEM_KINDS = (
    AccountKind.FX,
    AccountKind.FX_SPREAD,
    AccountKind.FEES,
    AccountKind.SUSPENSE,
    AccountKind.CAPITAL,
)


async def open_system_accounts(uow: UnitOfWork) -> None:
    """Make sure every system account exists in every currency (inside `uow`; idempotent)."""
    for kind in SYSTEM_KINDS:
        for currency in Currency:
            await uow.ledger.get_or_create_account(kind=kind, currency=currency)


async def fund_float(uow: UnitOfWork, kind: AccountKind, amount: Money, note: str) -> None:
    """Book the funding inside `uow` and audit it (the caller commits)."""
    if kind not in FLOAT_KINDS:
        raise ValueError(f"{kind} is not a float account")
    await open_system_accounts(uow)
    posting = await bookings.float_funding(uow.ledger, kind, amount, note)
    if not amount.is_positive():
        # taken out: what processes hold leased of it comes back first (persistence/float_leases.py)
        await uow.ledger.recall_leases(await uow.ledger.account_id(kind=kind, currency=amount.currency))
    await book(uow, posting)
    uow.audit(
        action="float.funded",
        subject_type="LedgerAccount",
        subject_id=kind.value,
        details={"amount_minor": amount.amount_minor, "currency": amount.currency.value, "note": note},
    )


async def fund_new_floats(uow: UnitOfWork, opening: Mapping[AccountKind, Money], note: str) -> None:
    """Fund each float that was never booked (a new database) with its opening amount (inside `uow`)."""
    for kind, amount in opening.items():
        account = await uow.ledger.get_or_create_account(kind=kind, currency=amount.currency)
        if account.version == 1 and account.balance_minor == 0:
            await fund_float(uow, kind, amount, note)
