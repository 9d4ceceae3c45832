"""A policy's terms as boxes of intervals, which terms meet which, and one term's packet
classes over only the terms that meet it.

A term (one match with one of its service field-sets) accepts a box: a set of intervals on
each of six lines, source and destination address (IPv4 cells, then IPv6 cells), protocol,
source port, destination port and ICMP type. Two terms can decide the same packet only when
their boxes meet on every line, and a policy of thousands of rules is mostly terms that meet
few others. So lint never builds one table of every class against every term (that is
quadratic in the rules, in time and memory); it finds the pairs of terms that meet, from
the few distinct address sides and services the terms are made of, and answers each
question over the classes of one term's box, cut at the boundaries of the terms that meet
it (the atomic predicates of that box, as in Yang & Lam's "Real-time verification of
network properties using atomic predicates"). Cost grows with the pairs of terms that meet,
not with the square of the policy.

Why not a BDD library, as Batfish does: the questions lint asks (which match decides each
packet, which earlier matches, what removing a rule changes with other removals) are
first-match questions over an ordered list, which bit rows over the meeting terms answer
directly and vectorised; a BDD would add a compiled dependency and a node per prefix bit
for answers this keeps in a few words per class.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np

from microseg.compile.intent import DeviceIntent, Family, Match, ServiceFieldSet
from microseg.evaluate.cells import ADDRESS_BITS, field_set_intervals
from microseg.evaluate.packets import NO_ICMP_TYPE

Intervals = list[tuple[int, int]]
# Service lines: protocol, source port, destination port, ICMP type; whole-line extents.
SERVICE_LINES = ("protocol", "source_port", "destination_port", "icmp_type")
WHOLE = {"protocol": (0, 255), "source_port": (0, 65535), "destination_port": (0, 65535)}
WHOLE["icmp_type"] = (0, NO_ICMP_TYPE)
PAIR_CHUNK = 1 << 22  # interval comparisons per step of the service overlap test
EMPTY_LO = np.iinfo(np.int64).max  # an empty padding slot starts after every value


def merged(intervals: Intervals) -> Intervals:
    """Sorted, disjoint, non-adjacent intervals covering the same values."""
    result: Intervals = []
    for first, last in sorted(intervals):
        if result and first <= result[-1][1] + 1:
            result[-1] = (result[-1][0], max(result[-1][1], last))
        else:
            result.append((first, last))
    return result


class AddressLine:
    """Every prefix field-set of a device cut into atomic cells, IPv4 cells first: a field-set
    is then a few intervals of cell numbers (the same cells as `cells.address_cells`)."""

    def __init__(self, intent: DeviceIntent):
        self.intent = intent
        spans: dict[tuple[Family, str], Intervals] = {
            key: field_set_intervals(field_set)
            for key, field_set in intent.prefix_field_sets.items()
        }
        self.offset: dict[Family, int] = {}
        self.starts: dict[Family, list[int]] = {}
        offset = 0
        for family in ("ipv4", "ipv6"):
            top = 1 << ADDRESS_BITS[family]
            cuts = {0}
            for (fs_family, _), intervals in spans.items():
                if fs_family == family:
                    for first, last in intervals:
                        cuts.add(first)
                        if last + 1 < top:
                            cuts.add(last + 1)
            # Looked up by bisection: a dict of IPv6 integers hashes them into few slots
            # (their low bits are zero), which made lookups linear.
            self.starts[family] = [*sorted(cuts), top]
            self.offset[family] = offset
            offset += len(cuts)
        self._spans = spans
        self._cells: dict[tuple[Family, tuple[str, ...]], Intervals] = {}

    def side(self, family: Family, names: tuple[str, ...]) -> Intervals:
        """The cells of a match side: any of the field-sets (none: every address of the family)."""
        key = (family, names)
        if key not in self._cells:
            starts, offset = self.starts[family], self.offset[family]
            if not names:
                self._cells[key] = [(offset, offset + len(starts) - 2)]
            else:
                self._cells[key] = merged(
                    [
                        (
                            offset + bisect_left(starts, first),
                            offset + bisect_left(starts, last + 1) - 1,
                        )
                        for name in names
                        for first, last in self._spans[(family, name)]
                    ]
                )
        return self._cells[key]


def service_intervals(service: ServiceFieldSet | None) -> dict[str, Intervals]:
    """The service's intervals on each service line (EOS: protocol, ports and ICMP types of
    one field-set hold together; no field-set is any service)."""
    if service is None:
        return {line: [WHOLE[line]] for line in SERVICE_LINES}
    protocol = [(service.protocol, service.protocol)] if service.protocol is not None else None
    icmp = merged([(t, t) for t in service.icmp_types]) if service.icmp_types else None
    return {
        "protocol": protocol or [WHOLE["protocol"]],
        "source_port": merged(list(service.source_ports)) or [WHOLE["source_port"]],
        "destination_port": merged(list(service.destination_ports)) or [WHOLE["destination_port"]],
        "icmp_type": icmp or [WHOLE["icmp_type"]],
    }


@dataclass(frozen=True)
class IntervalTable:
    """Intervals of several owners (address sides, or services on one line), owner-major:
    owner o has lo/hi[start[o]:start[o + 1]]."""

    start: np.ndarray
    lo: np.ndarray
    hi: np.ndarray

    @classmethod
    def of(cls, per_owner: list[Intervals]) -> IntervalTable:
        counts = np.array([len(spans) for spans in per_owner], dtype=np.int64)
        start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        flat = [span for spans in per_owner for span in spans]
        lo = np.array([f for f, _ in flat], dtype=np.int64).reshape(-1)
        hi = np.array([last for _, last in flat], dtype=np.int64).reshape(-1)
        return cls(start, lo, hi)

    def owner_of_each(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.start) - 1), np.diff(self.start))

    def gather(self, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(position in `owners`, lo, hi) of every interval of the given owners."""
        counts = self.start[owners + 1] - self.start[owners]
        position = np.repeat(np.arange(len(owners)), counts)
        index = _ranges(self.start[owners], counts)
        return position, self.lo[index], self.hi[index]

    def padded(self) -> tuple[np.ndarray, np.ndarray]:
        """lo, hi as [owner, slot] arrays, empty slots as (EMPTY_LO, -1): above and below
        every value, so an empty slot meets no interval, not even one holding 0 and 1 (as
        (1, 0) did: `lo <= hi' and lo' <= hi` holds for (1, 0) against (0, 1))."""
        counts = np.diff(self.start)
        width = max(int(counts.max(initial=0)), 1)
        lo = np.full((len(counts), width), EMPTY_LO, dtype=np.int64)
        hi = np.full((len(counts), width), -1, dtype=np.int64)
        owner = self.owner_of_each()
        slot = np.arange(len(self.lo)) - self.start[owner]
        lo[owner, slot] = self.lo
        hi[owner, slot] = self.hi
        return lo, hi


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The concatenation of arange(start, start + count) for each pair."""
    group_start = np.cumsum(counts) - counts
    return np.repeat(starts - group_start, counts) + np.arange(int(counts.sum()))


def _overlapping_owners(table: IntervalTable) -> np.ndarray:
    """int64[pair, 2]: every (a, b) of owners with intervals that meet, both ways and (a, a)
    for every owner with an interval. Sorted by start, an interval meets exactly the later
    ones that start before it ends."""
    owner = table.owner_of_each()
    order = np.argsort(table.lo, kind="stable")
    lo, hi, owner = table.lo[order], table.hi[order], owner[order]
    stop = np.searchsorted(lo, hi, side="right")
    counts = stop - np.arange(len(lo)) - 1
    left = np.repeat(np.arange(len(lo)), counts)
    right = _ranges(np.arange(len(lo)) + 1, counts)
    count = len(table.start) - 1
    keys = np.concatenate(
        [
            owner[left] * count + owner[right],
            owner[right] * count + owner[left],
            owner * count + owner,
        ]
    )
    keys = sorted_unique(keys)
    return np.stack([keys // max(count, 1), keys % max(count, 1)], axis=1)


def _meet(lo: np.ndarray, hi: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """bool per pair: owners a[i] and b[i] of padded intervals share a value."""
    result = np.zeros(len(a), dtype=bool)
    width = lo.shape[1]
    step = max(1, PAIR_CHUNK // (width * width))
    for begin in range(0, len(a), step):
        x, y = a[begin : begin + step], b[begin : begin + step]
        touching = (lo[x][:, :, None] <= hi[y][:, None, :]) & (
            lo[y][:, None, :] <= hi[x][:, :, None]
        )
        result[begin : begin + step] = touching.any(axis=(1, 2))
    return result


class TermBoxes:
    """The terms of some matches of one policy, in order, each a box of intervals.

    Example: TermBoxes(AddressLine(intent), intent, policy.matches, np.arange(len(matches)))"""

    def __init__(
        self,
        line: AddressLine,
        intent: DeviceIntent,
        matches: tuple[Match, ...],
        match_indexes: np.ndarray,
    ):
        self.line = line
        sides: dict[tuple[Family, tuple[str, ...]], int] = {}
        services: dict[str | None, int] = {}
        term_match, source, destination, service = [], [], [], []
        for index, match in zip(match_indexes.tolist(), matches, strict=True):
            source_side = sides.setdefault((match.family, match.source_field_sets), len(sides))
            destination_side = sides.setdefault(
                (match.family, match.destination_field_sets), len(sides)
            )
            for name in match.service_field_sets or (None,):
                term_match.append(index)
                source.append(source_side)
                destination.append(destination_side)
                service.append(services.setdefault(name, len(services)))
        self.term_match = np.array(term_match, dtype=np.int64)
        self.source = np.array(source, dtype=np.int64)
        self.destination = np.array(destination, dtype=np.int64)
        self.service = np.array(service, dtype=np.int64)
        self.sides = IntervalTable.of([line.side(*key) for key in sides])
        per_service = [
            service_intervals(None if name is None else intent.service_field_sets[name])
            for name in services
        ]
        self.lines = {
            line_name: IntervalTable.of([s[line_name] for s in per_service])
            for line_name in SERVICE_LINES
        }
        whole_side = [line.side(family, ()) == line.side(family, names) for family, names in sides]
        # Per line (source, destination, then SERVICE_LINES): the table, each term's owner
        # in it, and per owner whether it is the whole line (of its family).
        self.per_line = [
            (self.sides, self.source, np.array(whole_side, dtype=bool)),
            (self.sides, self.destination, np.array(whole_side, dtype=bool)),
            *(
                (table, self.service, _is_whole(table, WHOLE[name]))
                for name, table in self.lines.items()
            ),
        ]

    def __len__(self) -> int:
        return len(self.term_match)

    # -- which terms meet -------------------------------------------------------------------
    @cached_property
    def meeting(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (start per term, terms): the terms whose box meets each term's box (itself
        included, ascending); none for a term that accepts no packet."""
        side_count = len(self.sides.start) - 1
        side_pairs = _overlapping_owners(self.sides)  # sorted: (side, partner side)
        side_keys = side_pairs[:, 0] * side_count + side_pairs[:, 1]
        neighbours = np.searchsorted(side_pairs[:, 0], np.arange(side_count + 1))
        roles = (self.source, self.destination)
        whole = self.per_line[0][2]
        every_source, every_destination = whole[self.source], whole[self.destination]
        # Partners are looked up in three disjoint sets, each along a side that narrows
        # them: terms with any source by their destination, terms with any destination by
        # their source, and the others along whichever side of the term reaches fewer (an
        # `any` side meets every term of its family, a group few).
        neither = ~every_source & ~every_destination
        fans = []
        for role in roles:
            per_side = np.bincount(role[neither], minlength=side_count)
            sums = np.concatenate([[0], np.cumsum(per_side[side_pairs[:, 1]])])
            fans.append(sums[neighbours[role + 1]] - sums[neighbours[role]])
        by_source = fans[0] <= fans[1]
        everyone = np.arange(len(self))
        lookups = (
            (1, everyone, every_source),
            (0, everyone, every_destination & ~every_source),
            (0, np.flatnonzero(by_source), neither),
            (1, np.flatnonzero(~by_source), neither),
        )
        found = []
        for along, terms, members in lookups:
            left, right = self._partners(roles[along], terms, members, side_pairs, neighbours)
            other = roles[1 - along]
            keys = other[left] * side_count + other[right]
            at = np.minimum(np.searchsorted(side_keys, keys), max(len(side_keys) - 1, 0))
            keep = side_keys[at] == keys if len(side_keys) else np.zeros(len(keys), bool)
            left, right = left[keep], right[keep]
            keep = self._services_meet(self.service[left], self.service[right])
            found.append(left[keep] * len(self) + right[keep])
        pairs = np.sort(np.concatenate(found))
        start = np.searchsorted(pairs, np.arange(len(self) + 1) * len(self))
        return start, pairs % max(len(self), 1)

    @cached_property
    def uncut(self) -> np.ndarray:
        """bool[line, term]: every term that meets the term holds all of its values on that
        line (the same side or service, the whole line, or a single value it meets), so the
        line is one class there."""
        start, partners = self.meeting
        owner_term = np.repeat(np.arange(len(self)), np.diff(start))
        result = np.zeros((len(self.per_line), len(self)), dtype=bool)
        for index, (table, owners, whole) in enumerate(self.per_line):
            one, lo, hi = _first_interval(table)
            point = one & (lo == hi)
            mine, theirs = owners[owner_term], owners[partners]
            holds = (theirs == mine) | whole[theirs] | point[mine]
            result[index] = np.bincount(owner_term[~holds], minlength=len(self)) == 0
        return result

    @cached_property
    def first_holders(self) -> np.ndarray:
        """bool per meeting pair (aligned with `meeting`'s partners): the partner holds the
        term's first packet, its lowest value on every line; that packet is the first class
        of the term's region, so this is the region's first row without building it."""
        start, partners = self.meeting
        term = np.repeat(np.arange(len(self)), np.diff(start))
        holds = np.ones(len(partners), dtype=bool)
        for table, owners, _ in self.per_line:
            lowest = table.lo[table.start[owners[term]]]
            holds &= _holds(table, owners[partners], lowest)
        return holds

    def first_point(self, term: int) -> np.ndarray:
        """The terms holding the term's first packet (ascending; the term among them)."""
        start, partners = self.meeting
        span = slice(start[term], start[term + 1])
        return partners[span][self.first_holders[span]]

    @cached_property
    def one_class(self) -> list[bool]:
        """Per term: uncut on every line, so its box is one class."""
        return [bool(one) for one in np.logical_and.reduce(self.uncut, axis=0)]

    @staticmethod
    def _partners(
        role: np.ndarray,
        terms: np.ndarray,
        members: np.ndarray,
        side_pairs: np.ndarray,
        neighbours: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(term, partner) for each of `terms` and every term of `members` (a mask) whose
        side in `role` meets the term's."""
        candidates = np.flatnonzero(members)
        side_count = len(neighbours) - 1
        # Only the side pairs that lead to a member (an `any` side meets every side).
        useful = np.bincount(role[candidates], minlength=side_count)[side_pairs[:, 1]] > 0
        side_pairs = side_pairs[useful]
        neighbours = np.searchsorted(side_pairs[:, 0], np.arange(side_count + 1))
        first = neighbours[role[terms]]
        counts = neighbours[role[terms] + 1] - first
        owner = np.repeat(terms, counts)
        partner_side = side_pairs[_ranges(first, counts), 1]
        order = candidates[np.argsort(role[candidates], kind="stable")]
        side_start = np.searchsorted(role[order], np.arange(side_count + 1))
        per = side_start[partner_side + 1] - side_start[partner_side]
        return np.repeat(owner, per), order[_ranges(side_start[partner_side], per)]

    def _services_meet(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """bool per pair of services: some packet fits both."""
        count = len(self.lines["protocol"].start) - 1
        asked = a * count + b
        pairs = sorted_unique(asked)
        x, y = pairs // count, pairs % count
        ok = np.ones(len(pairs), dtype=bool)
        for table in self.lines.values():
            lo, hi = table.padded()
            ok[ok] = _meet(lo, hi, x[ok], y[ok])
        return ok[np.searchsorted(pairs, asked)]

    def meets(self, term: int) -> np.ndarray:
        start, partners = self.meeting
        return partners[start[term] : start[term + 1]]

    # -- the classes of one term's box ----------------------------------------------------
    def classes(self, term: int, terms: np.ndarray) -> tuple[np.ndarray, ...]:
        """(source, destination, protocol, ICMP type, source port, destination port) classes
        of the term's box: uint64[class, word] rows over `terms` (bit i is terms[i]), in order
        of first value along each line; each class lies inside the box."""
        own = int(np.searchsorted(terms, term))
        every = every_bit(len(terms))
        uncut = self.uncut[:, term]
        source, destination, protocol, source_port, destination_port, icmp = (
            every if uncut[index] else self._line_classes(table, owners[terms], own)
            for index, (table, owners, _) in enumerate(self.per_line)
        )
        return source, destination, protocol, icmp, source_port, destination_port

    @staticmethod
    def _line_classes(table: IntervalTable, owners: np.ndarray, own: int) -> np.ndarray:
        """Distinct memberships of the values inside owners[own]'s intervals, as packed rows
        over the positions of `owners`: the line is cut at every interval end, and the
        membership of each piece is the XOR of the interval starts and ends before it."""
        position, lo, hi = table.gather(owners)
        cuts = sorted_unique(np.concatenate([lo, hi + 1]))
        words = max(1, -(-len(owners) // 64))
        toggles = np.zeros((len(cuts), words), dtype=np.uint64)
        bit = np.left_shift(np.uint64(1), (position % 64).astype(np.uint64))
        word = position // 64
        np.bitwise_xor.at(toggles, (np.searchsorted(cuts, lo), word), bit)
        np.bitwise_xor.at(toggles, (np.searchsorted(cuts, hi + 1), word), bit)
        pieces = np.bitwise_xor.accumulate(toggles, axis=0)
        inside = (pieces[:, own // 64] >> np.uint64(own % 64)) & np.uint64(1)
        return distinct_rows(pieces[inside.astype(bool)])


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique for integers by one sort (numpy 2's hashing unique is far slower on
    millions of values)."""
    ordered = np.sort(values)
    keep = np.ones(len(ordered), dtype=bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    return ordered[keep]


def _holds(table: IntervalTable, owners: np.ndarray, values: np.ndarray) -> np.ndarray:
    """bool per (owner, value): one of the owner's intervals holds the value. Intervals are
    owner-major and sorted, so (owner, lo) keys are sorted and one search finds the only
    interval that can hold it."""
    owner_of = table.owner_of_each()
    keys = (owner_of << 32) | table.lo  # every value of a line is below 2**32
    at = np.searchsorted(keys, (owners << 32) | values, side="right") - 1
    found = at >= 0
    at = np.maximum(at, 0)
    return found & (owner_of[at] == owners) & (table.hi[at] >= values)


@lru_cache(maxsize=4096)
def every_bit(count: int) -> np.ndarray:
    """uint64[1, word]: one row with bits 0..count-1 set (shared: not to be written)."""
    row = np.zeros((1, max(1, -(-count // 64))), dtype=np.uint64)
    row[0, : count // 64] = np.uint64(0xFFFFFFFFFFFFFFFF)
    if count % 64:
        row[0, count // 64] = np.uint64((1 << (count % 64)) - 1)
    return row


def _is_whole(table: IntervalTable, extent: tuple[int, int]) -> np.ndarray:
    """bool per owner: its intervals are exactly [extent]."""
    one, lo, hi = _first_interval(table)
    return one & (lo == extent[0]) & (hi == extent[1])


def _first_interval(table: IntervalTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per owner: whether it has exactly one interval, and its first interval's ends."""
    first = np.minimum(table.start[:-1], max(len(table.lo) - 1, 0))
    if not len(table.lo):
        return np.zeros(len(first), dtype=bool), first, first
    return np.diff(table.start) == 1, table.lo[first], table.hi[first]


def distinct_rows(rows: np.ndarray) -> np.ndarray:
    """The distinct rows, in order of first occurrence. Each row is compared as one opaque
    byte string (a void view): several times faster than np.unique(axis=0), which sorts
    field by field."""
    if len(rows) < 2:
        return rows
    rows = np.ascontiguousarray(rows)
    # Sorted by one word per row (the row itself, or a fingerprint of its words), the
    # first of each run of equal rows is kept; fingerprints that collide on different
    # rows fall back to comparing whole rows.
    key = rows[:, 0].copy()
    for word in range(1, rows.shape[1]):
        key = key * np.uint64(0x9E3779B97F4A7C15) + rows[:, word]
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    starts = np.ones(len(rows), dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    repeats = np.flatnonzero(~starts)
    if rows.shape[1] == 1 or (rows[order[repeats]] == rows[order[repeats - 1]]).all():
        return rows[np.sort(order[starts])]
    as_bytes = rows.view(np.dtype((np.void, rows.shape[1] * rows.itemsize))).reshape(-1)
    _, first = np.unique(as_bytes, return_index=True)
    return rows[np.sort(first)]
