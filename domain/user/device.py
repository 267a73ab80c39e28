"""Device (PEC 3.1.1): an authenticated client instance of a user (at most two)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import datetime

from domain.shared.clock import require_utc
from domain.shared.ids import DeviceId
from domain.user.errors import InvalidDevice

# Client-generated; printable ASCII without spaces so it is safe in headers and logs.
_DEVICE_ID = re.compile(r"[\x21-\x7e]{8,128}")
MAX_DEVICE_NAME_LENGTH = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    device_id: str
    name: str
    added_at: datetime
    last_seen_at: datetime
    id: DeviceId = field(default_factory=DeviceId.new)  # the row id; device_id is the client's

    def __post_init__(self) -> None:
        if not isinstance(self.device_id, str) or not _DEVICE_ID.fullmatch(self.device_id):
            raise InvalidDevice("device_id must be 8 to 128 printable ASCII characters without spaces")
        name = self.name.strip() if isinstance(self.name, str) else ""
        if not name or len(name) > MAX_DEVICE_NAME_LENGTH:
            raise InvalidDevice(f"device name must be 1 to {MAX_DEVICE_NAME_LENGTH} characters", field="name")
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "added_at", require_utc(self.added_at, "added_at"))
        object.__setattr__(self, "last_seen_at", require_utc(self.last_seen_at, "last_seen_at"))

    @classmethod
    def register(cls, device_id: str, name: str, *, now: datetime) -> Device:
        return cls(device_id=device_id, name=name, added_at=now, last_seen_at=now)

    def seen(self, at: datetime) -> Device:
        return dataclasses.replace(self, last_seen_at=max(self.last_seen_at, require_utc(at, "at")))
