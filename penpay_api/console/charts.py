"""Small SVG charts drawn on the server: no script, no inline style (the CSP allows neither)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: int
    y: int
    width: int


@dataclass(frozen=True, slots=True)
class BarChart:
    bars: tuple[Bar, ...]
    width: int
    height: int
    label_width: int


def bar_chart(
    values: Sequence[tuple[str, int]], *, width: int = 360, row: int = 22, label_width: int = 200
) -> BarChart:
    """Horizontal bars scaled to the largest value (templates/_bars.html draws them)."""
    top = max((v for _, v in values), default=0) or 1
    span = width - label_width - 40
    bars = tuple(
        Bar(label, value, index * row, max(1, round(span * value / top)) if value else 0)
        for index, (label, value) in enumerate(values)
    )
    return BarChart(bars, width, max(row, row * len(bars)), label_width)


@dataclass(frozen=True, slots=True)
class Column:
    label: str  # for the title a screen reader and a hover show
    value: int
    x: int
    y: int
    height: int


@dataclass(frozen=True, slots=True)
class ColumnChart:
    columns: tuple[Column, ...]
    width: int
    height: int
    column_width: int
    total: int
    peak: int


def column_chart(values: Sequence[tuple[str, int]], *, height: int = 60, column: int = 12) -> ColumnChart:
    """Vertical columns, one per value, scaled to the largest (a sparkline of counts over time)."""
    top = max((v for _, v in values), default=0)
    columns = tuple(
        Column(label, value, i * column, height - h, h)
        for i, (label, value) in enumerate(values)
        for h in [round((height - 2) * value / top) if top else 0]
    )
    return ColumnChart(columns, column * len(columns), height, column - 2, sum(v for _, v in values), top)
