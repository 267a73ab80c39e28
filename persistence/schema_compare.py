"""Type comparison for Alembic's autogenerate, aware of PenPay's column types.

SQLite reflects BINARY(16) as NUMERIC and has no fractional-second DATETIME, so the default
comparison reports differences that are only the dialect's way of spelling our types.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BINARY, DateTime

from persistence.types import UtcDateTime, UUIDv7


def compare_type(
    context: Any, inspected_column: Any, metadata_column: Any, inspected_type: Any, metadata_type: Any
) -> bool | None:
    """True when the types differ, False when they agree, None for Alembic's default rule."""
    dialect = context.dialect.name
    if isinstance(metadata_type, UUIDv7):
        if dialect == "sqlite":
            return False
        return not (isinstance(inspected_type, BINARY) and inspected_type.length == 16)
    if isinstance(metadata_type, UtcDateTime):
        if not isinstance(inspected_type, DateTime):
            return True
        return dialect != "sqlite" and getattr(inspected_type, "fsp", None) != 6
    return None
