"""Atomic cells of a DeviceIntent's field-sets: the finite space every question is asked over.

Every prefix field-set of a family is a union of address intervals (prefixes minus
except-prefixes). Cutting the address line at every interval boundary yields atomic cells:
each cell is wholly inside or wholly outside every field-set. Port ranges are cut the same
way. A packet's verdict depends only on its cells, so membership is computed once per
field-set (not per rule, not per packet), as the runs of cells inside it, and a packet is
looked up with one `searchsorted` per address column. Runs, not one bool per cell: a
10,000-rule policy has ~20,000 field-sets over ~100,000 cells.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

from microseg.compile.intent import DeviceIntent, Family, PrefixFieldSet
from microseg.evaluate.packets import ADDRESS_DTYPE
from microseg.model import PolicySet
from microseg.model.objects import PortRange

ADDRESS_BITS = {"ipv4": 32, "ipv6": 128}


def field_set_intervals(field_set: PrefixFieldSet) -> list[tuple[int, int]]:
    """The addresses of a field-set as sorted disjoint [first, last] integer intervals.

    EOS `except` entries remove addresses from the field-set's prefixes."""
    return prefix_intervals(field_set.prefixes, field_set.except_prefixes)


def prefix_intervals(prefixes, except_prefixes) -> list[tuple[int, int]]:
    """The addresses of `prefixes` minus `except_prefixes` as sorted disjoint [first, last]
    integer intervals (a field-set's, or a group's of one family)."""
    included = merge_intervals([prefix_span(p) for p in prefixes])
    excluded = merge_intervals([prefix_span(p) for p in except_prefixes])
    return subtract_intervals(included, excluded)


def prefix_span(prefix) -> tuple[int, int]:
    """A prefix's first and last address, without building address objects (ipaddress's
    broadcast_address costs more than the whole interval arithmetic)."""
    first = int(prefix.network_address)
    return first, first | ((1 << (prefix.max_prefixlen - prefix.prefixlen)) - 1)


def merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for first, last in sorted(intervals):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def subtract_intervals(
    included: list[tuple[int, int]], excluded: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    result: list[tuple[int, int]] = []
    for first, last in included:
        cursor = first
        for ex_first, ex_last in excluded:
            if ex_last < cursor or ex_first > last:
                continue
            if ex_first > cursor:
                result.append((cursor, ex_first - 1))
            cursor = max(cursor, ex_last + 1)
        if cursor <= last:
            result.append((cursor, last))
    return result


@dataclass(frozen=True)
class AddressCells:
    """The atomic address cells of one family: cell i is [starts[i], starts[i+1])."""

    family: Family
    starts: list[int]  # python ints, sorted, starts[0] == 0
    search_keys: np.ndarray  # starts as S16 bytes (ipv6) or uint64 (ipv4)
    # field-set name -> the cells inside it, as [first, stop) runs of cell indices
    runs: dict[str, tuple[tuple[int, int], ...]]

    def __len__(self) -> int:
        return len(self.starts)

    def inside(self, names: tuple[str, ...]) -> np.ndarray:
        """bool[cell]: the cells inside any of the field-sets `names`."""
        inside = np.zeros(len(self.starts), dtype=bool)
        for name in names:
            for first, stop in self.runs[name]:
                inside[first:stop] = True
        return inside

    def lookup(self, addresses: np.ndarray) -> np.ndarray:
        """Cell index of each address (S16 column of this family)."""
        keys = ipv4_integers(addresses) if self.family == "ipv4" else addresses
        return (np.searchsorted(self.search_keys, keys, side="right") - 1).astype(np.int64)

    def representative(self, cell: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        """An address inside the cell (its first)."""
        return (
            ipaddress.ip_address(self.starts[cell])
            if self.family == "ipv4"
            else (ipaddress.IPv6Address(self.starts[cell]))
        )

    def cell_range(self, cell: int) -> tuple[int, int]:
        last = (
            (self.starts[cell + 1] - 1)
            if cell + 1 < len(self.starts)
            else ((1 << ADDRESS_BITS[self.family]) - 1)
        )
        return self.starts[cell], last


def ipv4_integers(addresses: np.ndarray) -> np.ndarray:
    """The IPv4 address in the last 4 bytes of each S16 value, as uint64."""
    raw = np.ascontiguousarray(addresses, dtype=ADDRESS_DTYPE).view(np.uint8).reshape(-1, 16)
    return raw[:, 12:].copy().view(">u4").reshape(-1).astype(np.uint64)


def address_cells(intent: DeviceIntent, family: Family) -> AddressCells:
    intervals = {
        name: field_set_intervals(field_set)
        for (fs_family, name), field_set in sorted(intent.prefix_field_sets.items())
        if fs_family == family
    }
    top = 1 << ADDRESS_BITS[family]
    cuts = {0}
    for spans in intervals.values():
        for first, last in spans:
            cuts.add(first)
            if last + 1 < top:
                cuts.add(last + 1)
    starts = sorted(cuts)
    if family == "ipv4":
        search_keys = np.array(starts, dtype=np.uint64)
    else:
        search_keys = np.array([s.to_bytes(16, "big") for s in starts], dtype=ADDRESS_DTYPE)
    runs = {
        name: tuple(
            (_index(starts, first), _index(starts, last + 1) if last + 1 < top else len(starts))
            for first, last in spans
        )
        for name, spans in intervals.items()
    }
    return AddressCells(family, starts, search_keys, runs)


def _index(starts: list[int], value: int) -> int:
    from bisect import bisect_left

    return bisect_left(starts, value)


@dataclass(frozen=True)
class PortCells:
    """Atomic port cells: cell i is [starts[i], starts[i+1]); `of_port` maps a port to it."""

    starts: list[int]
    of_port: np.ndarray  # int32[65536]

    def __len__(self) -> int:
        return len(self.starts)

    def cells_of(self, ranges: tuple[PortRange, ...]) -> np.ndarray:
        """bool[cell]: the cells inside the ranges (every cell when ranges is empty = all)."""
        inside = np.zeros(len(self.starts), dtype=bool)
        if not ranges:
            inside[:] = True
        for low, high in ranges:
            inside[self.of_port[low] : self.of_port[high] + 1] = True
        return inside

    def cell_range(self, cell: int) -> tuple[int, int]:
        last = self.starts[cell + 1] - 1 if cell + 1 < len(self.starts) else 65535
        return self.starts[cell], last


def port_cells(range_sets: list[tuple[PortRange, ...]]) -> PortCells:
    cuts = {0}
    for ranges in range_sets:
        for low, high in ranges:
            cuts.add(low)
            if high < 65535:
                cuts.add(high + 1)
    starts = sorted(cuts)
    of_port = (np.searchsorted(np.array(starts), np.arange(65536), side="right") - 1).astype(
        np.int32
    )
    return PortCells(starts, of_port)


def port_cuts(policy_set: PolicySet) -> tuple[int, ...]:
    """Where a port's fate can change in this policy: each range of every Service (source or
    destination) starts a cell and ends one. A device's port cells (`port_cells`) come from
    the same Services, and so do a scope's (the builder's) and the engine's folds'."""
    cuts: set[int] = set()
    for service in policy_set.services:
        for low, high in (*service.destination_ranges, *service.source_ranges):
            cuts.update((low, high + 1))
    return tuple(sorted(cuts))
