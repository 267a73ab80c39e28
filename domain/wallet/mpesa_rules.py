"""What M-Pesa accepts: whole shillings, 1 to 250,000 KES per STK push or B2C payment."""

from __future__ import annotations

from domain.wallet.errors import CurrencyMismatch, MpesaAmountOutOfRange, NotWholeShillings
from domain.wallet.money import Currency, Money

MPESA_MIN = Money(1 * 100, Currency.KES)
MPESA_MAX = Money(250_000 * 100, Currency.KES)


def require_whole_shillings(money: Money, *, field: str = "amount") -> Money:
    if money.currency is not Currency.KES:
        raise CurrencyMismatch(f"M-Pesa moves KES, not {money.currency}", field=field)
    if not money.is_whole_units():
        raise NotWholeShillings(f"M-Pesa moves whole shillings only; {money} has cents", field=field)
    return money


def require_mpesa_amount(money: Money, *, field: str = "amount") -> Money:
    """Whole shillings within M-Pesa's per-transaction limits."""
    require_whole_shillings(money, field=field)
    if not MPESA_MIN <= money <= MPESA_MAX:
        raise MpesaAmountOutOfRange(
            f"M-Pesa accepts {MPESA_MIN} to {MPESA_MAX} per transaction; got {money}", field=field
        )
    return money
