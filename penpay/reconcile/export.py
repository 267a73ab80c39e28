"""A run's items as CSV (for operators and spreadsheets), and a small progress bar for the terminal."""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from application.reconciliation.export import CSV_COLUMNS, csv_cell

COLUMNS = CSV_COLUMNS  # one set of columns with the console's download


def items_csv(rows: Sequence[Any]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for row in rows:
        values = []
        for column in COLUMNS:
            value = getattr(row, column)
            text = "" if value is None else value.isoformat() if hasattr(value, "isoformat") else value
            values.append(csv_cell(text) if isinstance(text, str) else text)
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
