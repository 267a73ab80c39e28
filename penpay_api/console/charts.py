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
