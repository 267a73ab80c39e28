"""The Deriv payment agent's per-transfer limits, checked before a payment starts."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.shared.errors import DomainError
from domain.wallet.deriv_rules import DerivTransferLimits
from domain.wallet.errors import CurrencyMismatch, DerivAmountOutOfRange, InvalidAmount, RateExpired
from domain.wallet.locked_rate import LockedRate
from domain.wallet.money import Currency, Money

from .conftest import NOW

pytestmark = pytest.mark.unit


def usd(text: str) -> Money:
    return Money.parse(text, Currency.USD)


def kes(shillings: int) -> Money:
    return Money(shillings * 100, Currency.KES)


def deposit_rate(kes_per_usd: str) -> LockedRate:
    """A deposit's quote as FixedRates locks it: the customer pays `kes_per_usd` shillings per dollar."""
    return LockedRate.create(
        quote_id="quote-deposit",
        base=Currency.USD,
        quote=Currency.KES,
        rate=kes_per_usd,
        locked_at=NOW,
        expires_at=NOW + timedelta(minutes=2),
    ).inverse()


LIMITS = DerivTransferLimits(usd("10.00"), usd("2000.00"))  # Deriv's default for a fiat agent


# --- a USD amount (a withdrawal) ----------------------------------------------------------------


@pytest.mark.parametrize("amount", ["10.00", "10.01", "1999.99", "2000.00"])
def test_usd_amounts_from_the_minimum_to_the_maximum_pass(amount: str) -> None:
    assert LIMITS.check(usd(amount)) == usd(amount)


@pytest.mark.parametrize(
    ("amount", "shown", "side"),
    [
        ("9.99", "USD 9.99", "below the minimum"),
        ("5", "USD 5.00", "below the minimum"),
        ("2000.01", "USD 2,000.01", "above the maximum"),
    ],
)
def test_usd_amounts_outside_the_limits_are_refused_with_the_range(
    amount: str, shown: str, side: str
) -> None:
    with pytest.raises(DerivAmountOutOfRange) as refused:
        LIMITS.check(usd(amount), what="withdrawals")

    assert refused.value.reason == "DERIV_AMOUNT_OUT_OF_RANGE"
    assert refused.value.field == "amount"
    assert str(refused.value) == f"withdrawals must be between USD 10.00 and USD 2,000.00; {shown} is {side}"


@pytest.mark.parametrize("amount", ["0", "-10.00"])
def test_a_non_positive_amount_is_not_an_amount_at_all(amount: str) -> None:
    with pytest.raises(InvalidAmount) as refused:
        LIMITS.check(usd(amount))
    assert not isinstance(refused.value, DerivAmountOutOfRange)


def test_deriv_limits_judge_usd_only() -> None:
    with pytest.raises(CurrencyMismatch):
        LIMITS.check(kes(5_000))


# --- a KES deposit, by the USD it converts to -------------------------------------------------------


def test_a_deposit_of_kes_650_is_refused_with_the_range_in_both_currencies() -> None:
    with pytest.raises(DerivAmountOutOfRange) as refused:
        LIMITS.check_deposit(kes(650), deposit_rate("130"), at=NOW)

    assert refused.value.field == "amount"
    assert str(refused.value) == (
        "deposits must convert to between USD 10.00 and USD 2,000.00; KES 650.00 converts to USD 5.00"
        " at the quoted rate (deposit at least KES 1,300.00)"
    )


@pytest.mark.parametrize(
    ("kes_per_usd", "shillings", "converted"),
    [
        ("130", 1_300, "10.00"),  # exactly the minimum
        ("131", 1_311, "10.00"),  # USD 10.0076 rounds down onto the minimum
        ("129.99", 1_300, "10.00"),  # USD 10.0007
        ("130", 260_000, "2000.00"),  # exactly the maximum
        ("130", 260_001, "2000.00"),  # USD 2,000.0076 rounds down onto the maximum
    ],
)
def test_a_deposit_converting_onto_a_limit_passes(kes_per_usd: str, shillings: int, converted: str) -> None:
    conversion = LIMITS.check_deposit(kes(shillings), deposit_rate(kes_per_usd), at=NOW)

    assert conversion.source == kes(shillings)
    assert conversion.target == usd(converted)  # what the saga will transfer, rounded down


@pytest.mark.parametrize(
    ("kes_per_usd", "shillings", "converted", "hint"),
    [
        ("130", 1_299, "USD 9.99", "deposit at least KES 1,300.00"),  # USD 9.9923
        ("131", 1_309, "USD 9.99", "deposit at least KES 1,310.00"),  # USD 9.9923
        ("129.99", 1_299, "USD 9.99", "deposit at least KES 1,300.00"),  # USD 9.9930
        ("130", 260_002, "USD 2,000.01", "deposit at most KES 260,001.00"),  # USD 2,000.0153
    ],
)
def test_a_deposit_converting_past_a_limit_is_refused_with_the_shillings_that_would_do(
    kes_per_usd: str, shillings: int, converted: str, hint: str
) -> None:
    with pytest.raises(DerivAmountOutOfRange) as refused:
        LIMITS.check_deposit(kes(shillings), deposit_rate(kes_per_usd), at=NOW)

    assert f"converts to {converted} at the quoted rate ({hint})" in str(refused.value)


def test_deposit_bounds_are_the_whole_shillings_at_the_edges() -> None:
    assert LIMITS.deposit_bounds(deposit_rate("130")) == (kes(1_300), kes(260_001))
    assert LIMITS.deposit_bounds(deposit_rate("131")) == (kes(1_310), kes(262_001))


def test_a_deposit_is_judged_only_on_a_live_quote_into_usd() -> None:
    with pytest.raises(RateExpired):
        LIMITS.check_deposit(kes(1_300), deposit_rate("130"), at=NOW + timedelta(minutes=2))
    into_kes = deposit_rate("130").inverse()
    with pytest.raises(CurrencyMismatch):
        LIMITS.check_deposit(usd("20"), into_kes, at=NOW)


# --- the limits themselves ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minimum", "maximum"),
    [
        (usd("0"), usd("2000")),
        (usd("20.00"), usd("10.00")),
        (kes(10), usd("2000")),
    ],
)
def test_limits_are_positive_ordered_usd_amounts(minimum: Money, maximum: Money) -> None:
    with pytest.raises(DomainError):
        DerivTransferLimits(minimum, maximum)


def test_a_single_allowed_amount_is_a_valid_range() -> None:
    exactly = DerivTransferLimits(usd("10.00"), usd("10.00"))
    assert exactly.check(usd("10.00")) == usd("10.00")
    with pytest.raises(DerivAmountOutOfRange):
        exactly.check(usd("10.01"))
