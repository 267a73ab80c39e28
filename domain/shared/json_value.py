"""The JSON-safe value type used in event payloads (no floats: money is never a float)."""

from __future__ import annotations

from typing import Protocol, TypeAlias

JSONValue: TypeAlias = "bool | int | str | list[JSONValue] | dict[str, JSONValue] | None"


class JsonEncodable(Protocol):
    """A value object that knows its own JSON form (e.g. Money)."""

    def to_json(self) -> JSONValue: ...
