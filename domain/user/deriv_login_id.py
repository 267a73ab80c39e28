"""DerivLoginId (PEC 3.1.2): the address of a user's Deriv account.

On WebSocket API v3 it is a loginid such as "CR123456". Deriv's new REST API names accounts by
nickname only (loginids, tokens and app ids do not carry over to it), so a new-API account's id is
its nickname written "@nickname" — the same form the gateway's journal uses. One value type keeps
one column, one uniqueness rule (one account, one user) and one field name (`deriv_login_id`) for
both generations; `is_rest` says which API the account is reached through.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.user.errors import InvalidDerivLoginId, VirtualAccountRefused

_LOGIN_ID = re.compile(r"[A-Z]+[0-9]+")
# The REST API's nickname (what a payment-agent transfer is addressed to), as the gateway accepts it.
_NICKNAME = re.compile(r"[A-Za-z0-9_.\-]{1,31}")
REST_PREFIX = "@"
# Demo accounts: VRTC (Deriv) and VRW (wallet) prefixes.
_VIRTUAL_PREFIXES = ("VRTC", "VRW")


@dataclass(frozen=True, slots=True)
class DerivLoginId:
    value: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, str):
            raise InvalidDerivLoginId("Deriv login id must be text")
        text = self.value.strip()
        if text.startswith(REST_PREFIX):
            if not _NICKNAME.fullmatch(text[1:]):
                raise InvalidDerivLoginId("a new-API Deriv account looks like @nickname")
            object.__setattr__(self, "value", text)  # nicknames keep their case
            return
        normalised = text.upper()
        if len(normalised) > 32 or not _LOGIN_ID.fullmatch(normalised):
            raise InvalidDerivLoginId("Deriv login id looks like CR123456")
        object.__setattr__(self, "value", normalised)

    @classmethod
    def rest(cls, nickname: str) -> DerivLoginId:
        """A new-API (REST) account, by its nickname."""
        return cls(f"{REST_PREFIX}{nickname}")

    @property
    def is_rest(self) -> bool:
        return self.value.startswith(REST_PREFIX)

    @property
    def nickname(self) -> str:
        """The REST account's nickname ("" for a v3 loginid)."""
        return self.value[1:] if self.is_rest else ""

    @property
    def is_virtual(self) -> bool:
        return self.value.startswith(_VIRTUAL_PREFIXES)

    def require_real_money(self) -> DerivLoginId:
        if self.is_virtual:
            raise VirtualAccountRefused(f"{self.value} is a demo account; use a real-money (e.g. CR) account")
        return self

    def __str__(self) -> str:
        return self.value
