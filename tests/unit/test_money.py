from __future__ import annotations

from decimal import Decimal

import pytest

from domain.wallet.errors import CurrencyMismatch, InvalidAmount, UnsupportedCurrency
from domain.wallet.money import Currency, Money

pytestmark = pytest.mark.unit

USD = Currency.USD
KES = Currency.KES


@pytest.mark.parametrize("amount", [12.34, True, Decimal("12"), "1234", None])
def test_money_refuses_anything_but_an_integer_of_minor_units(amount: object) -> None:
    with pytest.raises(InvalidAmount):
        Money(amount, USD)  # type: ignore[arg-type]


def test_money_refuses_a_currency_code_string() -> None:
    with pytest.raises(UnsupportedCurrency):
        Money(100, "USD")  # type: ignore[arg-type]


def test_currency_parse_names_the_way_out() -> None:
    assert Currency.parse("KES") is KES
    with pytest.raises(UnsupportedCurrency, match="USD or KES"):
        Currency.parse("EUR")


def test_both_currencies_have_two_minor_digits() -> None:
    assert USD.minor_digits == KES.minor_digits == 2


@pytest.mark.parametrize(
    ("text", "minor"),
    [("12.34", 1234), ("12.3", 1230), ("12", 1200), ("0.01", 1), ("-5.50", -550), ("-0", 0), ("007", 700)],
)
def test_parse_is_exact(text: str, minor: int) -> None:
    assert Money.parse(text, USD) == Money(minor, USD)


def test_parse_refuses_more_decimals_than_the_currency_has() -> None:
    with pytest.raises(InvalidAmount, match="2 decimal places"):
        Money.parse("12.345", USD)


@pytest.mark.parametrize(
    "text",
    ["1e3", "NaN", "inf", "Infinity", "", " 12", "12 ", "+12", "12.", ".5", "1,000", "١٢", "0x10", "--1"],
)
def test_parse_refuses_anything_that_is_not_a_plain_decimal(text: str) -> None:
    with pytest.raises(InvalidAmount):
        Money.parse(text, USD)


def test_parse_refuses_a_float() -> None:
    with pytest.raises(InvalidAmount):
        Money.parse(12.34, USD)  # type: ignore[arg-type]


def test_arithmetic_within_one_currency() -> None:
    a, b = Money(1000, KES), Money(250, KES)
    assert a + b == Money(1250, KES)
    assert a - b == Money(750, KES)
    assert -a == Money(-1000, KES)
    assert a * 3 == 3 * a == Money(3000, KES)


def test_multiplying_by_a_float_is_refused() -> None:
    with pytest.raises(InvalidAmount):
        Money(100, USD) * 1.5  # type: ignore[operator]


def test_mixing_currencies_is_refused() -> None:
    with pytest.raises(CurrencyMismatch):
        Money(100, USD) + Money(100, KES)
    with pytest.raises(CurrencyMismatch):
        _ = Money(100, USD) < Money(100, KES)


def test_comparisons() -> None:
    assert Money(1, USD) < Money(2, USD) <= Money(2, USD)
    assert Money(3, USD) > Money(2, USD) >= Money(2, USD)


def test_sign_predicates() -> None:
    assert Money.zero(USD).is_zero()
    assert Money(1, USD).is_positive()
    assert Money(-1, USD).is_negative()


def test_text_forms() -> None:
    assert Money(1234, USD).to_decimal_string() == "12.34"
    assert Money(-5, USD).to_decimal_string() == "-0.05"
    assert str(Money(100_000, KES)) == "1000.00 KES"
    assert Money(7, USD).to_json() == {"amount_minor": 7, "currency": "USD"}


def test_equal_amounts_in_different_currencies_are_not_equal() -> None:
    assert Money(100, USD) != Money(100, KES)
