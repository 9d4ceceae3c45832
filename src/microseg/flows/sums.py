"""Exact sums of session counters, saturating where the store does.

A counter is a whole number from 0 to 2**63-1: the store holds a larger one at 2**63-1
(`flows.sessions`), and a sum of counters saturates there too. int64 arithmetic wraps and
float64 (np.bincount's weights) is exact only below 2**53, so the sums here split each value
into three 21-bit parts, whose sums stay exact in float64 for up to 2**32 rows, and join the
parts in Python integers (once per group, never per row).
"""

from __future__ import annotations

import numpy as np

INT64_MAX = 2**63 - 1
_PART = 21
_SHIFTS = (0, _PART, 2 * _PART)
_MASK = (1 << _PART) - 1


def saturated(total: int) -> int:
    """A sum as the store reports it: at most 2**63-1."""
    return min(int(total), INT64_MAX)


def group_sums(group: np.ndarray, values: np.ndarray, groups: int) -> list[int]:
    """Per group 0..groups-1, the exact sum of its rows' values (not saturated: add sums
    of sums first, then `saturated`)."""
    values = values.astype(np.int64, copy=False)
    parts = [
        np.bincount(group, weights=(values >> shift) & _MASK, minlength=groups).tolist()
        for shift in _SHIFTS
    ]
    return [
        int(low) + (int(middle) << _PART) + (int(high) << 2 * _PART)
        for low, middle, high in zip(*parts, strict=True)
    ]


def total(values: np.ndarray) -> int:
    """The exact sum of the values, saturated."""
    values = values.astype(np.int64, copy=False)
    return saturated(sum(int(((values >> shift) & _MASK).sum()) << shift for shift in _SHIFTS))


def saturating_add(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Row by row, two counters added (request and reply), saturated: int64 `+` wraps."""
    first = first.astype(np.int64, copy=False)
    second = second.astype(np.int64, copy=False)
    return np.minimum(first, INT64_MAX - second) + second


def pair_total(first: np.ndarray, second: np.ndarray, row: int) -> int:
    """One row's two counters added (request and reply), saturated."""
    return saturated(int(first[row]) + int(second[row]))
