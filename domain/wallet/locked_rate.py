"""LockedRate (PEC 3.1.4): the FX rate fixed when a transaction starts, and conversion by it.

Conversion rounds DOWN to whole minor units of the target currency, so PenPay never pays
out money that was not paid in. The part lost to rounding is the `residue`:

    residue_minor = source * rate (in target minor units, exact) - target

It is a fraction of one target minor unit (or of one step, when converting to whole units),
and it stays with PenPay. It is not booked as its own ledger line: the ledger books the
source amount into the FX account in the source currency and the target amount out of it
in the target currency, and each currency balances by itself. The residue is the FX
account's value gain on that trade; it is exposed (exactly, as a Fraction) for reporting
and for tests that prove conversion never creates money.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from domain.shared.clock import require_utc
from domain.wallet.errors import CurrencyMismatch, InvalidAmount, InvalidRate, RateExpired
from domain.wallet.money import Currency, Money


def _exact_rate(rate: Fraction | Decimal | str | int) -> Fraction:
    if isinstance(rate, float | bool):
        raise InvalidRate("a rate must be exact (Fraction, Decimal, str or int), never a float")
    if isinstance(rate, Decimal) and not rate.is_finite():
        raise InvalidRate(f"rate {rate} is not a finite number")
    try:
        return Fraction(rate)
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        raise InvalidRate(f"rate {rate!r} is not a number") from exc


@dataclass(frozen=True, slots=True)
class Conversion:
    source: Money
    target: Money
    # Target minor units lost to rounding down; 0 <= residue_minor < step of the conversion.
    residue_minor: Fraction


@dataclass(frozen=True, slots=True)
class LockedRate:
    """1 unit of `base` = `rate` units of `quote`, valid from locked_at until expires_at."""

    quote_id: str
    base: Currency
    quote: Currency
    rate: Fraction
    locked_at: datetime
    expires_at: datetime

    def __post_init__(self) -> None:
        if not isinstance(self.quote_id, str) or not self.quote_id.strip() or len(self.quote_id) > 64:
            raise InvalidRate("quote_id must be 1 to 64 characters", field="quote_id")
        if not isinstance(self.base, Currency) or not isinstance(self.quote, Currency):
            raise InvalidRate("base and quote must be Currency values")
        if self.base is self.quote:
            raise InvalidRate(f"a rate converts between two currencies, not {self.base} to itself")
        if not isinstance(self.rate, Fraction):
            raise InvalidRate("rate must be a Fraction; use LockedRate.create for other inputs")
        if self.rate <= 0:
            raise InvalidRate(f"rate must be positive, got {self.rate}")
        object.__setattr__(self, "locked_at", require_utc(self.locked_at, "locked_at"))
        object.__setattr__(self, "expires_at", require_utc(self.expires_at, "expires_at"))
        if self.expires_at <= self.locked_at:
            raise InvalidRate("a rate must expire after it was locked", field="expires_at")

    @classmethod
    def create(
        cls,
        *,
        quote_id: str,
        base: Currency,
        quote: Currency,
        rate: Fraction | Decimal | str | int,
        locked_at: datetime,
        expires_at: datetime,
    ) -> LockedRate:
        return cls(quote_id, base, quote, _exact_rate(rate), locked_at, expires_at)

    def is_expired(self, at: datetime) -> bool:
        return require_utc(at, "at") >= self.expires_at

    def inverse(self) -> LockedRate:
        """The same quote read the other way round (quote -> base)."""
        return LockedRate(
            self.quote_id, self.quote, self.base, 1 / self.rate, self.locked_at, self.expires_at
        )

    def convert(self, money: Money, *, at: datetime) -> Conversion:
        """Convert to the quote currency, rounded down to a whole minor unit."""
        return self._convert(money, at=at, step_minor=1)

    def convert_to_whole_units(self, money: Money, *, at: datetime) -> Conversion:
        """Convert rounding down to whole units (e.g. whole shillings for M-Pesa B2C)."""
        return self._convert(money, at=at, step_minor=self.quote.minor_per_unit)

    def _convert(self, money: Money, *, at: datetime, step_minor: int) -> Conversion:
        if money.currency is not self.base:
            raise CurrencyMismatch(f"rate {self.quote_id} converts {self.base}, not {money.currency}")
        if not money.is_positive():
            raise InvalidAmount(f"only a positive amount can be converted, got {money}")
        if self.is_expired(at):
            raise RateExpired(f"rate {self.quote_id} expired at {self.expires_at.isoformat()}")
        exact = (
            Fraction(money.amount_minor) * self.rate * self.quote.minor_per_unit / self.base.minor_per_unit
        )
        target_minor = (exact.numerator // exact.denominator) // step_minor * step_minor
        return Conversion(money, Money(target_minor, self.quote), exact - target_minor)
