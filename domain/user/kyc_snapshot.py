"""KycSnapshot (PEC 3.1.3): the user's Deriv KYC settings, as one immutable snapshot.

Built from Deriv's `get_settings` response. A new snapshot replaces the old one; fields
are never patched one by one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from domain.shared.clock import require_utc
from domain.shared.errors import InvalidValue


def _text(settings: Mapping[str, object], key: str) -> str | None:
    value = settings.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidValue(f"get_settings field {key} should be text", field=key)
    return value.strip() or None


def _country(settings: Mapping[str, object], key: str) -> str | None:
    value = _text(settings, key)
    return value.lower() if value else None


def _country_code(settings: Mapping[str, object], key: str) -> str | None:
    """Only a two-letter code: Deriv's get_settings sends `residence` as a country *name*
    ("Kenya") beside `country_code` ("ke")."""
    value = _country(settings, key)
    return value if value is not None and len(value) == 2 and value.isalpha() else None


def _epoch(settings: Mapping[str, object], key: str) -> int | None:
    value = settings.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidValue(f"get_settings field {key} should be epoch seconds", field=key)
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class KycSnapshot:
    first_name: str | None
    last_name: str | None
    date_of_birth: int | None  # epoch seconds, as Deriv sends it
    citizen: str | None  # ISO 3166-1 alpha-2, lower-case like Deriv
    place_of_birth: str | None = None
    residence: str | None
    address_line_1: str | None = field(default=None, repr=False)
    address_line_2: str | None = field(default=None, repr=False)
    address_city: str | None = None
    address_state: str | None = None
    address_postcode: str | None = field(default=None, repr=False)
    tax_residence: str | None = None
    tax_identification_number: str | None = field(default=None, repr=False)
    phone: str | None = field(default=None, repr=False)
    email: str | None = field(default=None, repr=False)
    taken_at: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "taken_at", require_utc(self.taken_at, "taken_at"))

    @classmethod
    def from_get_settings(cls, settings: Mapping[str, object], taken_at: datetime) -> KycSnapshot:
        return cls(
            first_name=_text(settings, "first_name"),
            last_name=_text(settings, "last_name"),
            date_of_birth=_epoch(settings, "date_of_birth"),
            citizen=_country(settings, "citizen"),
            place_of_birth=_country(settings, "place_of_birth"),
            residence=_country_code(settings, "country_code") or _country_code(settings, "residence"),
            address_line_1=_text(settings, "address_line_1"),
            address_line_2=_text(settings, "address_line_2"),
            address_city=_text(settings, "address_city"),
            address_state=_text(settings, "address_state"),
            address_postcode=_text(settings, "address_postcode"),
            tax_residence=_text(settings, "tax_residence"),
            tax_identification_number=_text(settings, "tax_identification_number"),
            phone=_text(settings, "phone"),
            email=_text(settings, "email"),
            taken_at=taken_at,
        )

    def missing_for_payments(self) -> tuple[str, ...]:
        """Which fields a money movement needs but this snapshot lacks."""
        required = {
            "first_name": self.first_name,
            "last_name": self.last_name,
            "date_of_birth": self.date_of_birth,
            "residence": self.residence,
        }
        return tuple(name for name, value in required.items() if value is None)

    def is_acceptable(self) -> bool:
        return not self.missing_for_payments()

    def same_profile(self, other: KycSnapshot) -> bool:
        """The same KYC data, whenever each was taken."""
        return replace(self, taken_at=other.taken_at) == other
