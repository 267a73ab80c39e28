"""Conversion never creates money: what is paid out is at most the exact value in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.wallet.locked_rate import LockedRate
from domain.wallet.money import Currency, Money

pytestmark = pytest.mark.property

NOW = datetime(2025, 12, 7, tzinfo=UTC)

rates = st.fractions(min_value=Fraction(1, 10_000), max_value=Fraction(100_000), max_denominator=10**6)
pairs = st.sampled_from([(Currency.USD, Currency.KES), (Currency.KES, Currency.USD)])
amounts = st.integers(min_value=1, max_value=10**13)


def _locked(base: Currency, quote: Currency, rate: Fraction) -> LockedRate:
    return LockedRate.create(
        quote_id="q", base=base, quote=quote, rate=rate, locked_at=NOW, expires_at=NOW + timedelta(minutes=5)
    )


def _exact_target_minor(source: Money, rate: LockedRate) -> Fraction:
    return source.amount_minor * rate.rate * rate.quote.minor_per_unit / rate.base.minor_per_unit


@settings(max_examples=200)
@given(pairs, rates, amounts)
def test_target_is_the_exact_value_rounded_down_to_a_minor_unit(
    pair: tuple[Currency, Currency], value: Fraction, amount: int
) -> None:
    rate = _locked(*pair, value)
    source = Money(amount, rate.base)
    conversion = rate.convert(source, at=NOW)
    exact = _exact_target_minor(source, rate)
    assert conversion.source == source
    assert conversion.target.currency is rate.quote
    assert conversion.target.amount_minor <= exact
    assert 0 <= conversion.residue_minor < 1
    assert conversion.target.amount_minor + conversion.residue_minor == exact


@settings(max_examples=200)
@given(pairs, rates, amounts)
def test_whole_unit_conversion_rounds_down_to_a_whole_unit(
    pair: tuple[Currency, Currency], value: Fraction, amount: int
) -> None:
    rate = _locked(*pair, value)
    source = Money(amount, rate.base)
    conversion = rate.convert_to_whole_units(source, at=NOW)
    exact = _exact_target_minor(source, rate)
    assert conversion.target.is_whole_units()
    assert 0 <= conversion.residue_minor < rate.quote.minor_per_unit
    assert conversion.target.amount_minor + conversion.residue_minor == exact


@settings(max_examples=200)
@given(pairs, rates, amounts)
def test_a_round_trip_through_both_directions_never_gains(
    pair: tuple[Currency, Currency], value: Fraction, amount: int
) -> None:
    rate = _locked(*pair, value)
    source = Money(amount, rate.base)
    there = rate.convert(source, at=NOW).target
    if not there.is_positive():
        return
    back = rate.inverse().convert(there, at=NOW).target
    assert back <= source
