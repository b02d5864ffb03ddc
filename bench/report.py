"""The figures table every benchmark ends its output with: one line a figure, its value beside
its target and a verdict ("ok", "MISSED", or none where the issues set no target).

    figures of bench_reader.py (1,000 items, median of 7 runs): 2 targets, all met
      read_feed / bare feedparser.parse    0.98x  target ≤ 1.2x   ok
      read_feed peak traced memory       10.5 MB  no target
      304 path over loopback HTTP        0.77 ms  target < 50 ms  ok

``against`` makes a figure with a target (the verdict computed from the comparison, never
written by hand), ``measured`` one without (``against_or_measured`` either, as a target is
known or not); ``print_figures`` prints the aligned table. A
missed target does not change a benchmark's exit status (``make bench`` goes on to the next
script); a benchmark that cannot measure exits with one line saying why.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

COMPARE: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "≤": operator.le,
    ">": operator.gt,
    "≥": operator.ge,
    "=": operator.eq,
}
GLUED = ("", "x", "%")  # units written without a space after the number


@dataclass(frozen=True)
class Figure:
    """One figure: ``target`` as printed ("target < 0.5 s", "no target", an expectation);
    ``ok`` None when there is no target to meet."""

    name: str
    value: float
    unit: str
    target: str
    ok: bool | None
    digits: int = 2

    @property
    def shown(self) -> str:
        return number(self.value, self.unit, self.digits)

    @property
    def verdict(self) -> str:
        return "" if self.ok is None else "ok" if self.ok else "MISSED"


def number(value: float, unit: str = "", digits: int = 2) -> str:
    """``value`` with thousands separators and ``digits`` decimals, then its unit."""
    space = "" if unit in GLUED else " "
    return f"{value:,.{digits}f}{space}{unit}"


def against(
    name: str,
    value: float,
    op: str,
    bound: float,
    unit: str = "",
    *,
    digits: int = 2,
    bound_text: str = "",
) -> Figure:
    """A figure that must satisfy ``value op bound`` (``op`` one of ``COMPARE``); the target
    reads ``bound_text`` when given (e.g. "TF-IDF's 0.612"), else the bound in ``unit``."""
    plain = f"{int(bound):,}" if float(bound).is_integer() else f"{bound:g}"
    shown = bound_text or f"{plain}{'' if unit in GLUED else ' '}{unit}"
    return Figure(name, value, unit, f"target {op} {shown}", COMPARE[op](value, bound), digits)


def measured(
    name: str, value: float, unit: str = "", *, digits: int = 2, note: str = "no target"
) -> Figure:
    """A figure without a target; ``note`` may state the product's expectation instead."""
    return Figure(name, value, unit, note, None, digits)


def against_or_measured(
    name: str,
    value: float,
    op: str,
    bound: float | None,
    unit: str = "",
    *,
    digits: int = 2,
    note: str = "no target",
) -> Figure:
    """``against`` when there is a ``bound``, else ``measured`` with ``note``."""
    if bound is None:
        return measured(name, value, unit, digits=digits, note=note)
    return against(name, value, op, bound, unit, digits=digits)


def print_figures(title: str, figures: Sequence[Figure]) -> None:
    """The aligned table, under ``title``; the last thing a benchmark prints."""
    name_width = max(len(figure.name) for figure in figures)
    value_width = max(len(figure.shown) for figure in figures)
    target_width = max(len(figure.target) for figure in figures)
    missed = sum(figure.ok is False for figure in figures)
    with_target = sum(figure.ok is not None for figure in figures)
    targets = f"{with_target} target{'' if with_target == 1 else 's'}"
    summary = (
        f"{missed} of {targets} MISSED"
        if missed
        else f"{targets}, {'all met' if with_target > 1 else 'met'}"
        if with_target
        else ""
    )
    print(f"\nfigures of {title}: {summary or 'no targets'}")
    for figure in figures:
        line = (
            f"  {figure.name:<{name_width}}  {figure.shown:>{value_width}}  "
            f"{figure.target:<{target_width}}  {figure.verdict}"
        )
        print(line.rstrip(), flush=True)


def figures_json(figures: Sequence[Figure]) -> list[dict[str, Any]]:
    """The figures for a ``--json`` output: name, value, unit, target and verdict (null
    without a target)."""
    return [
        {
            "name": figure.name,
            "value": figure.value,
            "unit": figure.unit,
            "target": figure.target,
            "verdict": figure.verdict or None,
        }
        for figure in figures
    ]
