"""`penpay float fund` reads money as it is written: a currency, then an exact amount."""

from __future__ import annotations

import pytest

from domain.wallet.money import Currency, Money
from penpay.commands.float_fund import parse_amount

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["USD", "1000"], Money(1000_00, Currency.USD)),
        (["USD 1000.5"], Money(1000_50, Currency.USD)),
        (["usd", "-250.01"], Money(-250_01, Currency.USD)),
    ],
)
def test_an_amount_with_its_currency_is_exact_money(words: list[str], expected: Money) -> None:
    assert parse_amount(words, expected=Currency.USD) == expected


def test_thousands_separators_are_read_as_written() -> None:
    assert parse_amount(["KES", "50,000.00"], expected=Currency.KES) == Money(50_000_00, Currency.KES)


@pytest.mark.parametrize(
    ("words", "says"),
    [
        (["250000"], "with its currency"),
        (["1000", "USD"], "with its currency"),
        (["USD", "10", "20"], "with its currency"),
        (["EUR", "10"], "USD or KES"),
        (["KES", "10"], "holds USD, not KES"),
        (["USD", "1.005"], "2 decimal places"),
        (["USD", "1e3"], "like 1000 or 50000.00"),
        (["USD", "0"], "must not be 0"),
    ],
)
def test_anything_else_is_refused_saying_what_is_expected(words: list[str], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_amount(words, expected=Currency.USD)
