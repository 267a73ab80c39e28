from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from domain.shared.errors import InvalidIdentifier
from domain.shared.ids import TransactionId, UserId, new_uuid7, uuid7_unix_ms
from tests.clocks import the_processes_clock

pytestmark = pytest.mark.unit


def test_uuid7_has_version_7_and_rfc_variant() -> None:
    value = new_uuid7()
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def _unix_ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def test_uuid7_embeds_the_current_millisecond() -> None:
    # UUIDv7 stamps with the system clock by design: the bounds are read from that same clock.
    before = _unix_ms(the_processes_clock())
    value = new_uuid7()
    after = _unix_ms(the_processes_clock())
    assert before <= uuid7_unix_ms(value) <= after + 1


def test_uuid7_sorts_in_creation_order_even_within_one_millisecond() -> None:
    values = [new_uuid7() for _ in range(5_000)]
    assert values == sorted(values)
    assert len(set(values)) == len(values)


def test_new_typed_id_is_v7_and_round_trips_through_text() -> None:
    user_id = UserId.new()
    assert user_id.value.version == 7
    assert UserId.from_str(str(user_id)) == user_id


def test_ids_read_back_from_storage_need_not_be_v7() -> None:
    v4 = uuid.uuid4()
    assert UserId(v4).value == v4


def test_ids_of_different_kinds_are_never_equal() -> None:
    value = new_uuid7()
    user: object = UserId(value)  # compared as any two objects are
    assert user != TransactionId(value)


def test_garbage_id_text_is_refused_with_the_field_named() -> None:
    with pytest.raises(InvalidIdentifier) as err:
        UserId.from_str("not-a-uuid", field="user_id")
    assert err.value.field == "user_id"


def test_a_string_is_not_accepted_in_place_of_a_uuid() -> None:
    with pytest.raises(InvalidIdentifier):
        UserId(str(new_uuid7()))  # type: ignore[arg-type]
