"""A run's items as CSV (for operators and spreadsheets), and a small progress bar for the terminal."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Sequence
from typing import Any, TextIO

COLUMNS = (
    "item_key",
    "source",
    "item_class",
    "provider_ref",
    "transaction_id",
    "provider_amount_cents",
    "provider_amount_currency",
    "penpay_amount_cents",
    "penpay_amount_currency",
    "occurred_at",
    "review_status",
    "suspense_posting_id",
    "detail",
)


def items_csv(rows: Sequence[Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for row in rows:
        values = []
        for column in COLUMNS:
            value = getattr(row, column)
            values.append(
                "" if value is None else value.isoformat() if hasattr(value, "isoformat") else value
            )
        writer.writerow(values)
    return buffer.getvalue()


class ProgressBar:
    """`[#####-----] 2/5 deriv_statement` on one terminal line (stderr), redrawn per step."""

    def __init__(self, total: int, stream: TextIO | None = None, width: int = 20) -> None:
        self._total = total
        self._done = 0
        self._stream = stream or sys.stderr
        self._width = width

    def step(self, label: str) -> None:
        self._done += 1
        filled = self._width * self._done // self._total
        bar = "#" * filled + "-" * (self._width - filled)
        end = "\n" if self._done >= self._total else ""
        self._stream.write(f"\r[{bar}] {self._done}/{self._total} {label:<20}{end}")
        self._stream.flush()
