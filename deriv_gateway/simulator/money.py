"""Money as integer minor units.

The wire carries JSON numbers; the simulator parses them as `Decimal` (never float) and keeps every
balance and amount as an integer count of the currency's smallest unit (cents for USD).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

# fractional digits per currency, as Deriv's website_status currencies_config reports them
CURRENCY_DIGITS: dict[str, int] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "AUD": 2,
    "BTC": 8,
    "ETH": 8,
    "LTC": 8,
    "USDC": 2,
    "eUSDT": 2,
    "tUSDT": 2,
}

CURRENCY_NAMES: dict[str, str] = {
    "USD": "US Dollar",
    "EUR": "Euro",
    "GBP": "Pound Sterling",
    "AUD": "Australian Dollar",
    "BTC": "Bitcoin",
    "ETH": "Ethereum",
    "LTC": "Litecoin",
    "USDC": "USD Coin",
    "eUSDT": "Tether ERC20",
    "tUSDT": "Tether TRC20",
}

CRYPTO = frozenset({"BTC", "ETH", "LTC", "USDC", "eUSDT", "tUSDT"})


class AmountError(ValueError):
    pass


def digits(currency: str) -> int:
    try:
        return CURRENCY_DIGITS[currency]
    except KeyError:
        raise AmountError(f"unknown currency {currency!r}") from None


def as_decimal(value: object) -> Decimal:
    """A wire or file amount as an exact Decimal (ints, Decimals and numeric strings; floats via repr)."""
    if isinstance(value, bool):
        raise AmountError("not an amount")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise AmountError(f"not an amount: {value!r}") from None
        if not result.is_finite():
            raise AmountError(f"not an amount: {value!r}")
        return result
    raise AmountError(f"not an amount: {value!r}")


def decimal_places(value: Decimal) -> int:
    """Significant decimal places: 10.50 has 1, 10 has 0 (as Perl's numeric parsing would see it)."""
    normalized = value.normalize()
    exponent = normalized.as_tuple().exponent
    return max(0, -int(exponent)) if isinstance(exponent, int) else 0


def to_minor(value: object, currency: str) -> int:
    """Exact conversion to minor units; raises AmountError if it has more decimals than the currency."""
    amount = as_decimal(value)
    places = digits(currency)
    if decimal_places(amount) > places:
        raise AmountError(f"more than {places} decimal places")
    return int(amount.scaleb(places))


def to_decimal(minor: int, currency: str) -> Decimal:
    return Decimal(minor).scaleb(-digits(currency))


def to_number(minor: int, currency: str) -> float:
    """For the wire: a JSON number (the exact decimal rendered through float's shortest repr)."""
    return float(to_decimal(minor, currency))


def format_amount(minor: int, currency: str) -> str:
    """'1000.00' style string, as Deriv's formatnumber does."""
    places = digits(currency)
    return f"{to_decimal(minor, currency):.{places}f}"


def plain(minor: int, currency: str) -> str:
    """Shortest plain rendering: 10, 2000, 0.002 (used in limit messages)."""
    text = format_amount(minor, currency)
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
