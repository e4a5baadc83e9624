"""Side-by-side figures on a noisy machine: interleaved repetitions, compared within each round.

Run one after the other, two measurements meet different moments of a busy machine; run in turns, each
round meets the same moment, so the ratio taken within a round is what the comparison rests on. A figure
is the median of those ratios, with its spread (the quartiles), so a run says how sure it is.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import TypeVar

_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


def rounds(measures: dict[_Key, Callable[[], _Value]], count: int) -> dict[_Key, list[_Value]]:
    """``count`` rounds of every measure, the order turning each round; each measure's values by round."""
    keys = list(measures)
    values: dict[_Key, list[_Value]] = {key: [] for key in keys}
    for index in range(count):
        turn = index % len(keys)
        for key in keys[turn:] + keys[:turn]:
            values[key].append(measures[key]())
    return values


def quartiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile); with fewer than two values, the one value three times."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    first, median, third = statistics.quantiles(values, n=4, method="inclusive")
    return first, median, third


def difference(values: Sequence[float], baseline: Sequence[float], unit: str, digits: int) -> str:
    """The median of per-round differences with its interquartile range, e.g. ``+0.40 ms (IQR +0.35 to +0.42)``."""
    first, median, third = quartiles([value - base for value, base in zip(values, baseline, strict=True)])
    return f"{median:+.{digits}f} {unit} (IQR {first:+.{digits}f} to {third:+.{digits}f})"


def ratio(values: Sequence[float], baseline: Sequence[float]) -> str:
    """The median of per-round ratios with its interquartile range, e.g. ``1.05x (IQR 1.01-1.09)``."""
    first, median, third = quartiles([value / base for value, base in zip(values, baseline, strict=True)])
    return f"{median:4.2f}x (IQR {first:.2f}-{third:.2f})"
