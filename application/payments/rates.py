"""FixedRates: the RateSource of the embedded stack and the simulators — a configured spread.

A deposit buys USD (the user pays `kes_per_usd_buy` shillings per dollar); a withdrawal sells
USD (the user receives `kes_per_usd_sell` per dollar). Both are exact decimals; the quote is
honoured until `ttl` after it was locked. The reference (mid) rate each quote carries is the middle
of the two, so the spread booked to FX_SPREAD is half the buy/sell difference either way. A live
rate feed is another adapter of the same port.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from domain.shared.errors import InvalidValue
from domain.wallet.locked_rate import LockedRate
from domain.wallet.money import Currency


class FixedRates:
    def __init__(
        self,
        *,
        kes_per_usd_buy: Decimal | str = Decimal("130.00"),
        kes_per_usd_sell: Decimal | str = Decimal("128.00"),
        ttl: timedelta = timedelta(minutes=2),
    ) -> None:
        self._buy = Fraction(Decimal(kes_per_usd_buy))
        self._sell = Fraction(Decimal(kes_per_usd_sell))
        if self._buy <= 0 or self._sell <= 0:
            raise InvalidValue("exchange rates must be positive")
        self._ttl = ttl
        self._mid = (self._buy + self._sell) / 2

    def lock(self, *, base: Currency, quote: Currency, now: datetime) -> LockedRate:
        if (base, quote) == (Currency.KES, Currency.USD):
            rate, reference = 1 / self._buy, 1 / self._mid
        elif (base, quote) == (Currency.USD, Currency.KES):
            rate, reference = self._sell, self._mid
        else:
            raise InvalidValue(f"no rate from {base} to {quote}")
        return LockedRate.create(
            quote_id=f"{base.value}{quote.value}-{secrets.token_hex(8)}",
            base=base,
            quote=quote,
            rate=rate,
            locked_at=now,
            expires_at=now + self._ttl,
            reference=reference,
        )
