from __future__ import annotations

import pytest

from domain.wallet.errors import CurrencyMismatch, MpesaAmountOutOfRange, NotWholeShillings
from domain.wallet.money import Currency, Money
from domain.wallet.mpesa_rules import MPESA_MAX, MPESA_MIN, require_mpesa_amount, require_whole_shillings

pytestmark = pytest.mark.unit


def test_kes_with_cents_cannot_go_to_mpesa() -> None:
    with pytest.raises(NotWholeShillings):
        require_whole_shillings(Money.parse("100.50", Currency.KES))


def test_whole_shillings_pass() -> None:
    amount = Money.parse("100", Currency.KES)
    assert require_whole_shillings(amount) is amount


def test_mpesa_moves_kes_only() -> None:
    with pytest.raises(CurrencyMismatch):
        require_whole_shillings(Money.parse("10", Currency.USD))


def test_limits_are_one_to_250_thousand_shillings() -> None:
    assert Money.parse("1", Currency.KES) == MPESA_MIN
    assert Money.parse("250000", Currency.KES) == MPESA_MAX
    require_mpesa_amount(MPESA_MIN)
    require_mpesa_amount(MPESA_MAX)
    with pytest.raises(MpesaAmountOutOfRange):
        require_mpesa_amount(Money.parse("250001", Currency.KES))
    with pytest.raises(MpesaAmountOutOfRange):
        require_mpesa_amount(Money.zero(Currency.KES))
