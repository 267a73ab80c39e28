from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from domain.wallet.errors import CurrencyMismatch, InvalidAmount, InvalidRate, RateExpired
from domain.wallet.locked_rate import LockedRate
from domain.wallet.money import Currency, Money

pytestmark = pytest.mark.unit


def _rate(now: datetime, rate: object = "129.50") -> LockedRate:
    return LockedRate.create(
        quote_id="q",
        base=Currency.USD,
        quote=Currency.KES,
        rate=rate,  # type: ignore[arg-type]
        locked_at=now,
        expires_at=now + timedelta(minutes=5),
    )


@pytest.mark.parametrize("rate", ["129.50", Decimal("129.50"), Fraction(259, 2)])
def test_rate_is_exact_from_str_decimal_or_fraction(now: datetime, rate: object) -> None:
    assert _rate(now, rate).rate == Fraction(259, 2)


@pytest.mark.parametrize("rate", [129.5, Decimal("NaN"), Decimal("Infinity"), "abc", "0", "-1", True])
def test_float_nan_garbage_and_non_positive_rates_are_refused(now: datetime, rate: object) -> None:
    with pytest.raises(InvalidRate):
        _rate(now, rate)


def test_conversion_rounds_down_and_reports_the_residue(now: datetime) -> None:
    kes_to_usd = _rate(now).inverse()
    conversion = kes_to_usd.convert(Money.parse("1000", Currency.KES), at=now)
    # 1000 / 129.5 = 7.7220... USD: 7.72 paid, 0.2200... cents kept by PenPay.
    assert conversion.target == Money(772, Currency.USD)
    assert conversion.residue_minor == Fraction(100_000 * 2, 259) - 772
    assert 0 <= conversion.residue_minor < 1


def test_conversion_to_whole_units_rounds_down_to_whole_shillings(now: datetime) -> None:
    conversion = _rate(now).convert_to_whole_units(Money.parse("10.01", Currency.USD), at=now)
    # 10.01 * 129.5 = 1296.295 KES -> 1296 KES.
    assert conversion.target == Money.parse("1296", Currency.KES)
    assert conversion.residue_minor == Fraction(59, 2)  # 29.5 cents, under one shilling


def test_an_expired_rate_refuses_to_convert(now: datetime) -> None:
    rate = _rate(now)
    with pytest.raises(RateExpired):
        rate.convert(Money(100, Currency.USD), at=rate.expires_at)


def test_a_rate_converts_only_its_base_currency(now: datetime) -> None:
    with pytest.raises(CurrencyMismatch):
        _rate(now).convert(Money(100, Currency.KES), at=now)


def test_only_positive_amounts_are_converted(now: datetime) -> None:
    with pytest.raises(InvalidAmount):
        _rate(now).convert(Money.zero(Currency.USD), at=now)


def test_a_rate_must_expire_after_it_is_locked(now: datetime) -> None:
    with pytest.raises(InvalidRate):
        LockedRate.create(
            quote_id="q", base=Currency.USD, quote=Currency.KES, rate="1", locked_at=now, expires_at=now
        )


def test_inverse_swaps_currencies_and_inverts_exactly(now: datetime) -> None:
    rate = _rate(now)
    inverse = rate.inverse()
    assert (inverse.base, inverse.quote) == (Currency.KES, Currency.USD)
    assert inverse.rate * rate.rate == 1
    assert inverse.inverse() == rate


# --- the spread, told apart from the conversion ------------------------------------------------


def _quote(now: datetime, *, rate: object, reference: object | None) -> LockedRate:
    return LockedRate.create(
        quote_id="q",
        base=Currency.KES,
        quote=Currency.USD,
        rate=rate,  # type: ignore[arg-type]
        locked_at=now,
        expires_at=now + timedelta(minutes=5),
        reference=reference,  # type: ignore[arg-type]
    )


def test_the_spread_is_what_the_source_paid_above_the_reference_rate(now: datetime) -> None:
    # Buy at 130 KES/USD, mid 129: KES 2,600 buys USD 20; at mid USD 20 costs KES 2,580.
    quote = _quote(now, rate=Fraction(1, 130), reference=Fraction(1, 129))
    kes = Money.parse("2600", Currency.KES)
    usd = quote.convert(kes, at=now).target
    conversion, spread = quote.spread_split(kes, usd)
    assert usd == Money.parse("20", Currency.USD)
    assert conversion == Money.parse("2580", Currency.KES)
    assert spread == Money.parse("20", Currency.KES)


def test_the_split_adds_up_rounds_the_conversion_up_and_never_goes_negative(now: datetime) -> None:
    quote = _quote(now, rate=Fraction(1, 130), reference=Fraction(1, 129))
    for minor in (1, 99, 12_345, 1_000_001, 25_000_000):
        kes = Money(minor, Currency.KES)
        usd = quote.convert(kes, at=now).target
        conversion, spread = quote.spread_split(kes, usd)
        assert conversion.amount_minor + spread.amount_minor == minor
        assert spread.amount_minor >= 0
        assert conversion.amount_minor >= usd.amount_minor * 129  # FX never short at the reference
    better_than_mid = _quote(now, rate=Fraction(1, 128), reference=Fraction(1, 129))
    kes = Money.parse("2560", Currency.KES)
    assert better_than_mid.spread_split(kes, better_than_mid.convert(kes, at=now).target)[1].amount_minor == 0


def test_without_a_reference_there_is_no_spread_and_the_reference_inverts(now: datetime) -> None:
    quote = _quote(now, rate=Fraction(1, 130), reference=None)
    kes = Money.parse("1300", Currency.KES)
    assert quote.spread_split(kes, Money.parse("10", Currency.USD)) == (kes, Money(0, Currency.KES))
    assert _quote(now, rate=Fraction(1, 130), reference="0.0078125").inverse().reference == Fraction(128)
    with pytest.raises(InvalidRate):
        _quote(now, rate=Fraction(1, 130), reference="0")
