"""The run's figures: each PenPay figure beside the raw baseline it is compared with, goals
judged met or missed, printed as a table and written as JSON (so runs can be compared)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.load import Sample


@dataclass
class Goal:
    text: str  # e.g. ">= 0.60 of raw"
    kind: str  # "ratio_at_least", "value_at_least", "value_at_most"
    threshold: float

    def met(self, figure: Figure) -> bool | None:
        value = figure.ratio if self.kind == "ratio_at_least" else figure.value
        if value is None:
            return None
        return value <= self.threshold if self.kind == "value_at_most" else value >= self.threshold


@dataclass
class Figure:
    group: str
    name: str
    value: float | None
    unit: str
    concurrency: int | None = None
    count: int | None = None
    errors: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_ms_per_op: dict[str, float] = field(default_factory=dict)
    baseline: str | None = None  # the name of the figure this one is compared with
    baseline_value: float | None = None
    ratio: float | None = None
    goal: Goal | None = None
    met: bool | None = None
    note: str = ""
    first_error: str | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["goal"] = self.goal.text if self.goal else None
        return data


class Results:
    def __init__(self) -> None:
        self.figures: list[Figure] = []
        self.notes: list[str] = []

    def get(self, name: str) -> Figure | None:
        return next((f for f in self.figures if f.name == name), None)

    def add(self, figure: Figure) -> Figure:
        if figure.baseline is not None:
            base = self.get(figure.baseline)
            if base is not None and base.value and figure.value is not None:
                figure.baseline_value = base.value
                figure.ratio = figure.value / base.value
        if figure.goal is not None:
            figure.met = figure.goal.met(figure)
        self.figures.append(figure)
        print(f"  {line(figure)}", flush=True)
        return figure

    def rate(
        self,
        group: str,
        name: str,
        sample: Sample,
        *,
        unit: str = "ops/s",
        baseline: str | None = None,
        goal: Goal | None = None,
        note: str = "",
    ) -> Figure:
        return self.add(
            Figure(
                group=group,
                name=name,
                value=sample.rate,
                unit=unit,
                concurrency=sample.concurrency,
                count=sample.count,
                errors=sample.errors,
                p50_ms=sample.p50_ms,
                p99_ms=sample.p99_ms,
                cpu_ms_per_op={k: round(v, 3) for k, v in sample.cpu_ms_per_op.items()},
                baseline=baseline,
                goal=goal,
                note=note,
                first_error=sample.first_error,
            )
        )


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def line(f: Figure) -> str:
    verdict = "" if f.met is None else ("met" if f.met else "MISSED")
    goal = f"{f.goal.text} {verdict}" if f.goal else ""
    errors = f" errors={f.errors}" if f.errors else ""
    return (
        f"{f.name:<52}{_num(f.value, {'ms': 1, 'x': 2}.get(f.unit, 0)):>9} {f.unit:<6}"
        f"{_num(f.p50_ms, 1):>10}{_num(f.p99_ms, 1):>10}"
        f"{_num(f.ratio, 2) if f.ratio is not None else '':>7}  {goal}{errors}"
    )


def print_table(results: Results, machine: dict[str, Any]) -> None:
    print()
    print(
        f"PenPay benchmark: {machine.get('cpu_count')} CPUs ({machine.get('cpu_model')}), "
        f"Python {machine.get('python')}, MariaDB {machine.get('mariadb')}, Redis {machine.get('redis')}, "
        f"commit {str(machine.get('git_commit'))[:10]}{' (dirty)' if machine.get('git_dirty') else ''}"
    )
    header = f"{'figure':<52}{'value':>9} {'unit':<6}{'p50 ms':>10}{'p99 ms':>10}{'ratio':>7}  goal"
    group = None
    for f in results.figures:
        if f.group != group:
            group = f.group
            print(f"\n[{group}]")
            print(header)
        print(line(f))
        if f.baseline and f.ratio is not None:
            print(f"{'':<4}ratio is against: {f.baseline}")
        if f.cpu_ms_per_op:
            cpu = ", ".join(
                f"{name} {ms:.2f}" for name, ms in sorted(f.cpu_ms_per_op.items(), key=lambda kv: -kv[1])
            )
            print(f"{'':<4}CPU ms per op: {cpu}")
        if f.first_error:
            print(f"{'':<4}first error: {f.first_error}")
        if f.note:
            print(f"{'':<4}{f.note}")
    goals = [f for f in results.figures if f.goal is not None]
    if goals:
        print("\nGoals:")
        for f in goals:
            value = f.ratio if f.goal and f.goal.kind == "ratio_at_least" else f.value
            verdict = "not measured" if f.met is None else ("met" if f.met else "MISSED")
            print(f"  {f.name}: {_num(value, 2)} ({f.goal.text if f.goal else ''}) {verdict}")
    for note in results.notes:
        print(f"note: {note}")


def write_json(path: Path, results: Results, machine: dict[str, Any], settings: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "machine": machine,
        "settings": settings,
        "figures": [f.as_json() for f in results.figures],
        "notes": results.notes,
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
