"""Money: an integer count of minor units plus a currency (PEC 3.1.4: never a float).

No operation rounds: anything that would need rounding (conversion) lives in LockedRate,
where the rounding direction is an explicit business rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Self

from domain.shared.json_value import JSONValue
from domain.wallet.errors import CurrencyMismatch, InvalidAmount, UnsupportedCurrency


class Currency(StrEnum):
    USD = "USD"
    KES = "KES"

    @property
    def minor_digits(self) -> int:
        """ISO 4217 minor unit digits (both USD and KES have cents)."""
        return 2

    @property
    def minor_per_unit(self) -> int:
        return int(10**self.minor_digits)

    @classmethod
    def parse(cls, code: str, *, field: str = "currency") -> Currency:
        try:
            return cls(code)
        except ValueError:
            raise UnsupportedCurrency(f"unsupported currency {code!r}; use USD or KES", field=field) from None


# ASCII digits only: \d would also accept other scripts' digits.
_DECIMAL = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")


def _require_int(value: object, what: str) -> int:
    # bool is an int subclass but True is not an amount.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmount(f"{what} must be an integer, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class Money:
    amount_minor: int
    currency: Currency

    def __post_init__(self) -> None:
        _require_int(self.amount_minor, "amount_minor")
        if not isinstance(self.currency, Currency):
            raise UnsupportedCurrency(f"currency must be a Currency, got {self.currency!r}")

    @classmethod
    def of_minor(cls, amount_minor: int, currency: Currency) -> Self:
        return cls(amount_minor, currency)

    @classmethod
    def zero(cls, currency: Currency) -> Self:
        return cls(0, currency)

    @classmethod
    def parse(cls, text: str, currency: Currency, *, field: str = "amount") -> Self:
        """Exact parse of "12.34" / "-5" / "0.5"; no exponents, signs other than '-', or spaces."""
        if not isinstance(text, str):
            raise InvalidAmount(f"amount must be a decimal string, got {type(text).__name__}", field=field)
        match = _DECIMAL.fullmatch(text)
        if match is None:
            raise InvalidAmount(f"{text!r} is not a decimal amount", field=field)
        sign, units, fraction = match.group(1), match.group(2), match.group(3) or ""
        if len(fraction) > currency.minor_digits:
            raise InvalidAmount(
                f"{currency} has {currency.minor_digits} decimal places; {text!r} has {len(fraction)}",
                field=field,
            )
        minor = int(units) * currency.minor_per_unit + int(fraction.ljust(currency.minor_digits, "0") or "0")
        return cls(-minor if sign else minor, currency)

    # --- predicates ---------------------------------------------------------------------

    def is_zero(self) -> bool:
        return self.amount_minor == 0

    def is_positive(self) -> bool:
        return self.amount_minor > 0

    def is_negative(self) -> bool:
        return self.amount_minor < 0

    def is_whole_units(self) -> bool:
        return self.amount_minor % self.currency.minor_per_unit == 0

    # --- arithmetic (same currency only, exact) ------------------------------------------

    def _same_currency(self, other: Money) -> None:
        if other.currency is not self.currency:
            raise CurrencyMismatch(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.amount_minor + other.amount_minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return Money(self.amount_minor - other.amount_minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount_minor, self.currency)

    def __abs__(self) -> Money:
        return Money(abs(self.amount_minor), self.currency)

    def __mul__(self, factor: int) -> Money:
        return Money(self.amount_minor * _require_int(factor, "multiplier"), self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount_minor < other.amount_minor

    def __le__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount_minor <= other.amount_minor

    def __gt__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount_minor > other.amount_minor

    def __ge__(self, other: Money) -> bool:
        if not isinstance(other, Money):
            return NotImplemented
        self._same_currency(other)
        return self.amount_minor >= other.amount_minor

    # --- presentation ---------------------------------------------------------------------

    def to_decimal_string(self) -> str:
        units, minor = divmod(abs(self.amount_minor), self.currency.minor_per_unit)
        sign = "-" if self.amount_minor < 0 else ""
        digits = self.currency.minor_digits
        return f"{sign}{units}.{minor:0{digits}d}" if digits else f"{sign}{units}"

    def to_json(self) -> JSONValue:
        return {"amount_minor": self.amount_minor, "currency": self.currency.value}

    def __str__(self) -> str:
        return f"{self.to_decimal_string()} {self.currency.value}"
