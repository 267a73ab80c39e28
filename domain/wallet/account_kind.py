"""Ledger sides and account kinds, and what each kind implies."""

from __future__ import annotations

from enum import StrEnum


class LedgerSide(StrEnum):
    DEBIT = "DEBIT"
    CREDIT = "CREDIT"

    def opposite(self) -> LedgerSide:
        return LedgerSide.CREDIT if self is LedgerSide.DEBIT else LedgerSide.DEBIT


class AccountKind(StrEnum):
    USER_WALLET = "USER_WALLET"
    MPESA_FLOAT = "MPESA_FLOAT"
    DERIV_AGENT_FLOAT = "DERIV_AGENT_FLOAT"
    FX = "FX"
    # What a conversion earned: the customer's rate against the reference (mid) rate, plus what
    # rounding down kept. FX then holds only the conversion itself, valued at the reference rate.
    FX_SPREAD = "FX_SPREAD"
    FEES = "FEES"
    # Money nobody can yet explain (a paybill payment nobody claimed, a reconciliation finding):
    # its balance is what a person still has to look at, so nothing else is booked to it.
    SUSPENSE = "SUSPENSE"
    # The house's own money put into (or, debited, taken out of) the floats: the owner's capital
    # contribution in accounting terms, kept apart from SUSPENSE so suspense shows only the unexplained.
    CAPITAL = "CAPITAL"
    # Money reconciliation held in SUSPENSE that two people agreed nobody in PenPay owns (a provider
    # fee, a provider's own error settled outside PenPay): written off here, never back to SUSPENSE.
    RECONCILIATION_WRITE_OFF = "RECONCILIATION_WRITE_OFF"

    @property
    def normal_side(self) -> LedgerSide:
        """Assets (money PenPay holds at M-Pesa or Deriv) are debit-normal; what PenPay
        owes users, its FX position, spread and fee income, suspense and the capital put into the
        floats are credit-normal."""
        return _NORMAL_SIDE[self]

    @property
    def default_no_overdraft(self) -> bool:
        """Real balances cannot be negative; FX, spread, fees, suspense and capital are not balances
        held anywhere (capital goes below zero when the house takes out more than it put in)."""
        return self in _NO_OVERDRAFT


_NORMAL_SIDE = {
    AccountKind.USER_WALLET: LedgerSide.CREDIT,
    AccountKind.MPESA_FLOAT: LedgerSide.DEBIT,
    AccountKind.DERIV_AGENT_FLOAT: LedgerSide.DEBIT,
    AccountKind.FX: LedgerSide.CREDIT,
    AccountKind.FX_SPREAD: LedgerSide.CREDIT,
    AccountKind.FEES: LedgerSide.CREDIT,
    AccountKind.SUSPENSE: LedgerSide.CREDIT,
    AccountKind.CAPITAL: LedgerSide.CREDIT,
    AccountKind.RECONCILIATION_WRITE_OFF: LedgerSide.CREDIT,
}

_NO_OVERDRAFT = frozenset({AccountKind.USER_WALLET, AccountKind.MPESA_FLOAT, AccountKind.DERIV_AGENT_FLOAT})
