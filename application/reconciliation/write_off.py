"""Writing off what reconciliation holds in SUSPENSE for an item, under four eyes.

Money a provider moved with no PenPay transaction (at Deriv, or into or out of a float) is booked
to SUSPENSE when first seen (bookings.unexplained_at_provider). When the people who looked agree it
is nobody's in PenPay (a provider fee, the provider's own error settled outside PenPay), one
operator proposes the write-off with the reason; a different person approves it, and only then is
bookings.reconciliation_write_off booked, once, under the item's row lock, and the item RESOLVED.
The proposer approving their own proposal is refused and that attempt audited. A rejection books
nothing and frees the item for another proposal. Money that is someone's is not written off: a C2B
payment goes to the paybill suspense review instead, and giving Deriv money to a user is not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from application.reconciliation.closing import OPEN, ItemNotFound, ItemNotOpen, StoredItem, reason_of
from application.review.errors import FourEyesRequired
from domain.shared.errors import DomainError, InvalidValue

__all__ = ["FourEyesRequired", "SuspenseWriteOffs"]


class NoSuspenseHeld(DomainError):
    """Nothing of the item is in SUSPENSE: close it with a reason instead (no money moves)."""

    reason = "RECONCILIATION_ITEM_HOLDS_NO_SUSPENSE"


class WriteOffAlreadyProposed(DomainError):
    reason = "RECONCILIATION_WRITE_OFF_ALREADY_PROPOSED"


class WriteOffNotProposed(DomainError):
    reason = "RECONCILIATION_WRITE_OFF_NOT_PROPOSED"


@dataclass(frozen=True, slots=True)
class WrittenOff:
    item_key: str
    posting_id: str


def _open_with_suspense(item: StoredItem | None) -> StoredItem:
    if item is None:
        raise ItemNotFound("no such reconciliation item")
    if item.review_status != OPEN:
        raise ItemNotOpen(f"the item is not open for review ({item.review_status})")
    if not item.holds_suspense:
        raise NoSuspenseHeld("nothing of this item is held in SUSPENSE; close it with a reason")
    return item


def check_proposable(item: StoredItem | None) -> StoredItem:
    found = _open_with_suspense(item)
    if found.write_off_proposed_by is not None:
        raise WriteOffAlreadyProposed(f"{found.write_off_proposed_by} proposed a write-off already")
    return found


def check_decidable(item: StoredItem | None) -> StoredItem:
    found = _open_with_suspense(item)
    if found.write_off_proposed_by is None:
        raise WriteOffNotProposed("no write-off is proposed for this item")
    return found


class WriteOffStore(Protocol):
    async def propose(self, item_key: str, *, staff: str, reason: str) -> None: ...

    async def approve(self, item_key: str, *, staff: str) -> WrittenOff: ...

    async def reject(self, item_key: str, *, staff: str, reason: str) -> None: ...


def _key(item_key: str) -> str:
    if not item_key.strip():
        raise InvalidValue("item_key is required", field="item_key")
    return item_key.strip()


class SuspenseWriteOffs:
    def __init__(self, store: WriteOffStore) -> None:
        self._store = store

    async def propose(self, *, staff: str, item_key: str, reason: str) -> None:
        why = reason_of(reason)
        await self._store.propose(_key(item_key), staff=staff, reason=why)

    async def approve(self, *, staff: str, item_key: str) -> WrittenOff:
        return await self._store.approve(_key(item_key), staff=staff)

    async def reject(self, *, staff: str, item_key: str, reason: str) -> None:
        why = reason_of(reason)
        await self._store.reject(_key(item_key), staff=staff, reason=why)
