"""DerivLoginId (PEC 3.1.2): a Deriv account id such as "CR123456"."""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.user.errors import InvalidDerivLoginId, VirtualAccountRefused

_LOGIN_ID = re.compile(r"[A-Z]+[0-9]+")
# Demo accounts: VRTC (Deriv) and VRW (wallet) prefixes.
_VIRTUAL_PREFIXES = ("VRTC", "VRW")


@dataclass(frozen=True, slots=True)
class DerivLoginId:
    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str):
            raise InvalidDerivLoginId("Deriv login id must be text")
        normalised = self.value.strip().upper()
        if len(normalised) > 32 or not _LOGIN_ID.fullmatch(normalised):
            raise InvalidDerivLoginId("Deriv login id looks like CR123456")
        object.__setattr__(self, "value", normalised)

    @property
    def is_virtual(self) -> bool:
        return self.value.startswith(_VIRTUAL_PREFIXES)

    def require_real_money(self) -> DerivLoginId:
        if self.is_virtual:
            raise VirtualAccountRefused(f"{self.value} is a demo account; use a real-money (e.g. CR) account")
        return self

    def __str__(self) -> str:
        return self.value
