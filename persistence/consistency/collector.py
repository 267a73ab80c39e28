"""Where the checks put their findings: violations, warnings, and at most max_rows rows per rule."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.consistency.report import ConsistencyReport, Violation, WarningCode


def _tx(value: Any) -> str | None:
    return None if value is None else str(value)


def money(cents: int, currency: str | None = None) -> str:
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    text = f"{sign}{whole}.{part:02d}"
    return f"{text} {currency}" if currency else text


class Collector:
    def __init__(self, report: ConsistencyReport, max_rows: int) -> None:
        self.report = report
        self.max_rows = max_rows

    def violation(self, code: str, message: str, transaction_id: Any = None) -> None:
        self.report.violations.append(Violation(str(code), message, _tx(transaction_id)))

    def warning(self, code: str, message: str, transaction_id: Any = None) -> None:
        self.report.warnings.append(Violation(str(code), message, _tx(transaction_id)))

    async def rows(self, connection: AsyncConnection, statement: Any, what: str) -> list[Any]:
        """At most max_rows offending rows; a warning says when more were left out."""
        rows = list(await connection.execute(statement.limit(self.max_rows + 1)))
        if len(rows) > self.max_rows:
            self.warning(WarningCode.TRUNCATED, f"only the first {self.max_rows} rows of '{what}' are listed")
            rows = rows[: self.max_rows]
        return rows
