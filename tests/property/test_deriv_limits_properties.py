"""At any quote, the shillings DerivTransferLimits names as the edges of a deposit are exact: they
convert within the limits, and one shilling further converts outside them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.wallet.deriv_rules import DerivTransferLimits
from domain.wallet.locked_rate import LockedRate
from domain.wallet.money import Currency, Money

pytestmark = pytest.mark.property

NOW = datetime(2025, 12, 7, tzinfo=UTC)
SHILLING = Money(100, Currency.KES)

kes_per_usd = st.decimals(min_value=Decimal("50"), max_value=Decimal("300"), places=2)
usd_cents = st.integers(min_value=1, max_value=1_000_000)


@given(kes_per_usd, usd_cents, usd_cents)
def test_the_deposit_bounds_are_the_last_shillings_inside_the_limits(
    price: Decimal, low: int, high: int
) -> None:
    limits = DerivTransferLimits(Money(min(low, high), Currency.USD), Money(max(low, high), Currency.USD))
    rate = LockedRate.create(
        quote_id="q",
        base=Currency.KES,
        quote=Currency.USD,
        rate=1 / Fraction(price),
        locked_at=NOW,
        expires_at=NOW + timedelta(minutes=2),
    )

    def converts_to(amount: Money) -> Money:
        return rate.convert(amount, at=NOW).target

    least, most = limits.deposit_bounds(rate)

    assert least.is_whole_units() and most.is_whole_units()
    assert converts_to(least) >= limits.minimum
    if least > SHILLING:
        assert converts_to(least - SHILLING) < limits.minimum
    if most.is_positive():  # at a high price, no whole shilling may buy a cent-sized maximum
        assert converts_to(most) <= limits.maximum
    assert converts_to(most + SHILLING) > limits.maximum
