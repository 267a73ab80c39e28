from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.wallet.errors import CurrencyMismatch, InvalidAmount
from domain.wallet.money import Currency, Money

pytestmark = pytest.mark.property

currencies = st.sampled_from(list(Currency))
minor = st.integers(min_value=-(10**15), max_value=10**15)


@st.composite
def money(draw: st.DrawFn, currency: Currency | None = None) -> Money:
    return Money(draw(minor), currency or draw(currencies))


@settings(max_examples=200)
@given(money())
def test_decimal_string_round_trips_exactly(value: Money) -> None:
    assert Money.parse(value.to_decimal_string(), value.currency) == value


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=99), currencies)
def test_parse_of_units_and_cents(units: int, cents: int, currency: Currency) -> None:
    assert Money.parse(f"{units}.{cents:02d}", currency).amount_minor == units * 100 + cents


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=999), currencies)
def test_parse_never_rounds_a_third_decimal(units: int, thousandths: int, currency: Currency) -> None:
    with pytest.raises(InvalidAmount):
        Money.parse(f"{units}.{thousandths:03d}", currency)


@settings(max_examples=200)
@given(st.text(max_size=12))
def test_parse_accepts_only_what_round_trips(text: str) -> None:
    try:
        value = Money.parse(text, Currency.USD)
    except InvalidAmount:
        return
    assert Money.parse(value.to_decimal_string(), Currency.USD) == value


@settings(max_examples=200)
@given(currencies.flatmap(lambda c: st.tuples(money(c), money(c), money(c))))
def test_addition_is_exact_associative_and_subtraction_undoes_it(abc: tuple[Money, Money, Money]) -> None:
    a, b, c = abc
    assert (a + b) + c == a + (b + c)
    assert (a + b) - b == a
    assert a + (-a) == Money.zero(a.currency)
    assert (a + b).amount_minor == a.amount_minor + b.amount_minor


@settings(max_examples=200)
@given(money(), st.integers(min_value=-1000, max_value=1000))
def test_multiplication_by_int_is_repeated_addition(value: Money, factor: int) -> None:
    assert (value * factor).amount_minor == value.amount_minor * factor


@settings(max_examples=200)
@given(money(Currency.USD), money(Currency.KES))
def test_currencies_never_mix(usd: Money, kes: Money) -> None:
    with pytest.raises(CurrencyMismatch):
        usd + kes
    with pytest.raises(CurrencyMismatch):
        _ = usd <= kes
