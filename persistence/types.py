"""Column types shared by every table."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BINARY, DateTime
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine


class UUIDv7(TypeDecorator[uuid.UUID]):
    """UUIDs as BINARY(16).

    Why binary and not CHAR(36): 16 bytes instead of 36 (plus utf8mb4 overhead) in every
    primary key, foreign key and secondary index; UUIDv7 is time-ordered, so its big-endian
    bytes keep InnoDB's clustered index append-only like an auto-increment would.
    """

    impl = BINARY(16)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, uuid.UUID):
            return value.bytes
        if hasattr(value, "value") and isinstance(value.value, uuid.UUID):  # typed ids
            return bytes(value.value.bytes)
        if isinstance(value, str):
            return uuid.UUID(value).bytes
        raise TypeError(f"cannot store {type(value).__name__} as a UUID")

    def process_result_value(self, value: Any, dialect: Dialect) -> uuid.UUID | None:
        return None if value is None else uuid.UUID(bytes=bytes(value))


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps stored as naive UTC (microseconds on MariaDB), returned timezone-aware."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware datetimes")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)
