"""What Deriv accepts from its payment agent: USD amounts within the agent's per-transfer limits.

Deriv refuses a `paymentagent_transfer` (a deposit's credit) or a `paymentagent_withdraw` (a
withdrawal's debit) below the agent's minimum or above its maximum (backend default USD 10 to
2,000 per transfer; an agent may have its own). Learnt from Deriv's refusal it comes too late: the
customer has already paid by M-Pesa, or waited for an emailed code. So a payment is refused when
it starts, against the same limits (configured, since they are the agent's).

A deposit is judged by the USD it converts to at its locked rate, rounded down exactly as the
saga will transfer it; its message also names the shillings that reach the limit at that rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from domain.wallet.errors import CurrencyMismatch, DerivAmountOutOfRange, InvalidAmount
from domain.wallet.locked_rate import Conversion, LockedRate
from domain.wallet.money import Currency, Money


@dataclass(frozen=True, slots=True)
class DerivTransferLimits:
    """The payment agent's per-transfer range in USD, both ends allowed."""

    minimum: Money
    maximum: Money

    def __post_init__(self) -> None:
        for bound in (self.minimum, self.maximum):
            if not isinstance(bound, Money) or bound.currency is not Currency.USD:
                raise CurrencyMismatch(f"Deriv transfer limits are USD amounts, not {bound!r}")
        if not Money.zero(Currency.USD) < self.minimum <= self.maximum:
            raise InvalidAmount(
                f"Deriv transfer limits need 0 < minimum <= maximum, got {self.minimum} to {self.maximum}"
            )

    def describe(self) -> str:
        return f"between {_show(self.minimum)} and {_show(self.maximum)}"

    def check(self, amount: Money, *, what: str = "Deriv transfers") -> Money:
        """`amount` (USD) when Deriv would move it; DerivAmountOutOfRange otherwise."""
        if amount.currency is not Currency.USD:
            raise CurrencyMismatch(f"Deriv transfers are in USD, not {amount.currency}")
        if not amount.is_positive():
            raise InvalidAmount(f"the amount must be positive, got {_show(amount)}")
        if self.minimum <= amount <= self.maximum:
            return amount
        side = "below the minimum" if amount < self.minimum else "above the maximum"
        raise DerivAmountOutOfRange(f"{what} must be {self.describe()}; {_show(amount)} is {side}")

    def check_deposit(self, amount: Money, rate: LockedRate, *, at: datetime) -> Conversion:
        """A deposit of `amount` converted at `rate` (into USD), when the USD is within the limits."""
        if rate.quote is not Currency.USD:
            raise CurrencyMismatch(f"a deposit converts into USD, not {rate.quote}", field="rate")
        conversion = rate.convert(amount, at=at)
        usd = conversion.target
        if self.minimum <= usd <= self.maximum:
            return conversion
        least, most = self.deposit_bounds(rate)
        hint = f"deposit at least {_show(least)}" if usd < self.minimum else f"deposit at most {_show(most)}"
        raise DerivAmountOutOfRange(
            f"deposits must convert to {self.describe()}; {_show(amount)} converts to {_show(usd)}"
            f" at the quoted rate ({hint})"
        )

    def deposit_bounds(self, rate: LockedRate) -> tuple[Money, Money]:
        """The least and the most whole units of `rate.base` (M-Pesa takes whole shillings) whose
        conversion at `rate`, rounded down, is within the limits."""
        # Target minor units per source minor unit: convert() floors source_minor * per_minor.
        per_minor = rate.rate * rate.quote.minor_per_unit / rate.base.minor_per_unit
        step = rate.base.minor_per_unit
        # floor(s * k) >= n  <=>  s >= n / k;   floor(s * k) <= n  <=>  s < (n + 1) / k
        least = math.ceil(Fraction(self.minimum.amount_minor) / per_minor / step) * step
        most = (math.ceil(Fraction(self.maximum.amount_minor + 1) / per_minor / step) - 1) * step
        return Money(least, rate.base), Money(most, rate.base)


def _show(money: Money) -> str:
    """USD 2,000.00: the currency first and thousands grouped, as a customer reads an amount."""
    units, minor = divmod(abs(money.amount_minor), money.currency.minor_per_unit)
    sign = "-" if money.amount_minor < 0 else ""
    return f"{money.currency.value} {sign}{units:,}.{minor:0{money.currency.minor_digits}d}"
