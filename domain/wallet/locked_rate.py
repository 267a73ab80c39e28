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

`reference` is the market (mid) rate the customer's rate was priced from, fixed with the quote.
`spread_split` cuts the source amount in two: what buys the target at the reference rate (the
conversion itself, booked to FX) and the rest, PenPay's spread with the rounding residue (booked
to FX_SPREAD). Without a reference (quotes locked before it existed) the spread is zero.
"""

from __future__ import annotations

import math
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
    # The market (mid) rate, same direction as `rate`; None: no spread is told apart.
    reference: Fraction | None = None

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
        if self.reference is not None and (not isinstance(self.reference, Fraction) or self.reference <= 0):
            raise InvalidRate("a reference rate must be a positive Fraction", field="reference")

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
        reference: Fraction | Decimal | str | int | None = None,
    ) -> LockedRate:
        ref = None if reference is None else _exact_rate(reference)
        return cls(quote_id, base, quote, _exact_rate(rate), locked_at, expires_at, ref)

    def is_expired(self, at: datetime) -> bool:
        return require_utc(at, "at") >= self.expires_at

    def inverse(self) -> LockedRate:
        """The same quote read the other way round (quote -> base)."""
        reference = None if self.reference is None else 1 / self.reference
        return LockedRate(
            self.quote_id, self.quote, self.base, 1 / self.rate, self.locked_at, self.expires_at, reference
        )

    def spread_split(self, source: Money, target: Money) -> tuple[Money, Money]:
        """(conversion, spread) of `source`, which bought `target` at this quote: `conversion` is what
        buys `target` at the reference rate (rounded up, so FX is never short), `spread` the rest
        (never negative: a customer rate better than the reference leaves FX the difference).
        Pure arithmetic on the booked amounts, so a reversal repeats it exactly; no expiry check."""
        if source.currency is not self.base or target.currency is not self.quote:
            raise CurrencyMismatch(f"rate {self.quote_id} converts {self.base} to {self.quote}")
        if self.reference is None:
            return source, Money(0, source.currency)
        exact = (
            Fraction(target.amount_minor)
            * self.base.minor_per_unit
            / (self.reference * self.quote.minor_per_unit)
        )
        conversion = min(math.ceil(exact), source.amount_minor)
        return Money(conversion, source.currency), Money(source.amount_minor - conversion, source.currency)

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
