"""Realistic Daraja identifiers (daraja-protocol.md section 8), drawn from seeded random streams.

Each kind of draw has its own stream derived from the seed, so e.g. injecting a fault does not shift the
receipts: the same seed and the same sequence of requests give the same ids.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from datetime import datetime

from mpesa_adapter.simulator.clock import EAT

_HEX = "0123456789abcdef"
_ALNUM = string.ascii_uppercase + string.digits
_DAY = "123456789ABCDEFGHIJKLMNOPQRSTUV"  # 1..9, then A=10 .. V=31
_TOKEN = string.ascii_letters + string.digits


class Streams:
    """Named random.Random streams derived from one seed."""

    def __init__(self, seed: int | str) -> None:
        self.seed = seed
        self._streams: dict[str, random.Random] = {}

    def __call__(self, name: str) -> random.Random:
        rng = self._streams.get(name)
        if rng is None:
            rng = self._streams[name] = random.Random(f"{self.seed}/{name}")
        return rng


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_HEX) for _ in range(n))


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


class IdFactory:
    def __init__(self, streams: Streams) -> None:
        self._s = streams
        self._issued: set[str] = set()

    def reset(self) -> None:
        self._issued.clear()

    def _unique(self, make: Callable[[], str]) -> str:
        for _ in range(1000):
            value = make()
            if value not in self._issued:
                self._issued.add(value)
                return value
        raise RuntimeError("identifier space exhausted")

    def gateway_id(self, stream: str = "ids") -> str:
        """`2654-4b64-97ff-b827b542881d3130`: MerchantRequestID and server-made OriginatorConversationID."""
        rng = self._s(stream)

        def make() -> str:
            tail = _digits(rng, rng.randint(4, 7))
            return f"{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 12)}{tail}"

        return self._unique(make)

    def request_id(self) -> str:
        rng = self._s("request_ids")
        tail = _digits(rng, rng.randint(4, 7))
        return f"{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 12)}{tail}"

    def checkout_request_id(self, now: datetime, msisdn: str) -> str:
        """`ws_CO_` + DDMMYYYYHHmmss + 3-digit ms + subscriber number without 254."""
        now = now.astimezone(EAT)
        rng = self._s("ids")
        stamp = now.strftime("%d%m%Y%H%M%S")
        start = rng.randrange(1000)  # wall-clock ms would make ids irreproducible
        for step in range(1000):
            value = f"ws_CO_{stamp}{(start + step) % 1000:03d}{msisdn[-9:]}"
            if value not in self._issued:
                self._issued.add(value)
                return value
        raise RuntimeError("too many pushes to one subscriber in one second")

    def conversation_id(self, now: datetime, stream: str = "ids") -> str:
        rng = self._s(stream)
        day = now.astimezone(EAT).strftime("%Y%m%d")
        return self._unique(lambda: f"AG_{day}_{_hex(rng, 20)}")

    def receipt(self, now: datetime, stream: str = "receipts") -> str:
        """`[year][month][day]` + 7 alphanumerics, e.g. `UK5...` for 2026-11-05."""
        rng = self._s(stream)
        return self._unique(lambda: receipt_prefix(now) + "".join(rng.choice(_ALNUM) for _ in range(7)))

    def token(self) -> str:
        rng = self._s("tokens")
        return self._unique(lambda: "".join(rng.choice(_TOKEN) for _ in range(28)))


def receipt_prefix(now: datetime) -> str:
    now = now.astimezone(EAT)
    year = chr(ord("L") + (now.year - 2017) % 26)
    return year + "ABCDEFGHIJKL"[now.month - 1] + _DAY[now.day - 1]


def placeholder_transaction_id(now: datetime) -> str:
    """Non-transaction results (balance, status) carry ids like `LGR0000000`."""
    return receipt_prefix(now) + "0000000"
