"""The simulator's state, independent of aiohttp's server side: config, clock, seeded streams, tokens,
books, fault rules, the credential checker and the callback dispatcher."""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict, deque

from mpesa_adapter.simulator import errors
from mpesa_adapter.simulator.auth import TokenStore
from mpesa_adapter.simulator.books import Books
from mpesa_adapter.simulator.c2b import C2BRegistry
from mpesa_adapter.simulator.clock import Clock
from mpesa_adapter.simulator.config import SimulatorConfig
from mpesa_adapter.simulator.credentials import CredentialChecker
from mpesa_adapter.simulator.delivery import Dispatcher
from mpesa_adapter.simulator.errors import DarajaError
from mpesa_adapter.simulator.faults import FaultBook
from mpesa_adapter.simulator.ids import IdFactory, Streams

ORG_NAME = "PenPay Sim Org"
_FIRST = ["JOHN", "MARY", "PETER", "GRACE", "JAMES", "FAITH", "DAVID", "MERCY", "BRIAN", "JOY"]
_MIDDLE = ["KAMAU", "WANJIKU", "OTIENO", "ACHIENG", "MUTUA", "NJERI", "KIPROP", "AKINYI", "MWANGI"]
_LAST = ["DOE", "ODHIAMBO", "KARIUKI", "WAFULA", "KIMANI", "OCHIENG", "NDUNGU", "SONGOK", "MAINA", "BARASA"]


class Engine:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.clock = Clock(config.clock)
        self.credentials = (
            CredentialChecker.from_file(config.key_file)
            if config.key_file
            else CredentialChecker.from_seed(config.key_seed)
        )
        self.dispatcher = Dispatcher(self.clock, self._delivery_settings)
        self.books = Books(config.utility_balance, config.working_balance, self.home_shortcode)
        self.c2b = C2BRegistry()  # paybill URLs registered by Register URL
        self._hits: dict[str, deque[float]] = defaultdict(deque)
        self.reseed(config.seed)
        self.tokens = TokenStore(lambda: self.ids.token(), self.clock.monotonic)

    def reseed(self, seed: int | str) -> None:
        self.config.seed = seed
        self.streams = Streams(seed)
        self.ids = IdFactory(self.streams)
        self.faults = FaultBook(self.streams("faults"))

    def reset(self, seed: int | str | None = None, tokens: bool = False) -> None:
        """Forget books, rules and the delivery log (and tokens if asked); restart the random streams."""
        self.reseed(self.config.seed if seed is None else seed)
        if tokens:
            self.tokens.reset()
        self.books.reset(self.config.utility_balance, self.config.working_balance, self.home_shortcode)
        self.dispatcher.log.clear()
        self._hits.clear()

    @property
    def home_shortcode(self) -> str:
        """The B2C shortcode the opening utility balance is on (payouts are funded there)."""
        return self.config.b2c_shortcodes[0] if self.config.b2c_shortcodes else ""

    def _delivery_settings(self) -> tuple[float, float, float, int]:
        c = self.config
        return c.callback_timeout, c.duplicate_gap, c.late_delay, c.callback_retries

    def error(self, spec: tuple[int, str, str], request_id: str | None = None) -> DarajaError:
        return errors.err(spec, request_id or self.ids.request_id())

    def rate_limit(self, api: str) -> None:
        """Apigee spike arrest, when config.spike_arrest_rps is set: N requests per rolling second."""
        rps = self.config.spike_arrest_rps
        if not rps:
            return
        now = time.monotonic()
        hits = self._hits[api]
        while hits and hits[0] <= now - 1.0:
            hits.popleft()
        if len(hits) >= rps:
            raise self.error(errors.SPIKE_ARREST)
        hits.append(now)

    def check_credential(self, initiator: str, credential: str) -> bool:
        return initiator == self.config.initiator_name and self.credentials.matches(
            credential, self.config.initiator_password
        )

    def display_phone(self, phone: str) -> str | int:
        return f"0{phone[3:9]}***" if self.config.mask_phone_numbers else int(phone)

    def public_name(self, phone: str) -> str:
        shown = f"0{phone[3:9]}***" if self.config.mask_phone_numbers else phone
        return f"{shown} - {customer_name(phone)}"


def customer_name(phone: str) -> str:
    """A stable made-up registered name for a phone number."""
    digest = hashlib.sha256(phone.encode()).digest()
    first, middle, last = (
        names[b % len(names)] for b, names in zip(digest[:3], (_FIRST, _MIDDLE, _LAST), strict=True)
    )
    return f"{first} {middle} {last}"
