"""Merging canonical session rows: numpy lookups and reductions, no Python code per row.

Rows are a dict of equal-length numpy columns (`sessions.CANONICAL_COLUMNS`: the session key,
per-direction aggregates, and `hash`, a 64-bit hash of the key). `ActiveSessions` holds each
key once, in the order the sessions arrived, with a hash index (open addressing, linear
probing, vectorised: one numpy pass per probe step, not per row). New rows look their hash
up: a row of a known session is added into it where it stands (`ufunc.at`, so rows of one
session in one batch all count); rows of new sessions are sorted by hash, reduced to one
per key and appended. Keys are always compared,
never trusted to the hash: when two different keys share a hash (about once in 2**64 / n**2,
or an input crafted for it), or a sum could pass 2**64, the merge takes the general path —
everything sorted by (hash, key) and reduced with exact saturating sums — so such rows cost
time, never a wrong merge. Both paths give what `GROUP BY key` with the aggregates below
gives (tests/flows/test_session_merge.py holds them to DuckDB's answer).

Aggregates per key: packets and bytes add up, saturating at 2**64-1 (RFC 7011 counters are
unsigned64); first seen and created take the minimum; last seen, the ICMP request mark, the
exporter id and touched the maximum; TCP flags are or-ed.
"""

from __future__ import annotations

import numpy as np

from microseg.flows.sums import saturating_group_sums

Rows = dict[str, np.ndarray]

KEY = ["vrf_id", "protocol", "low_hi", "low_lo", "low_port", "high_hi", "high_lo", "high_port"]
SUMS = ["a_packets", "a_bytes", "b_packets", "b_bytes"]
MINIMA = ["a_first", "b_first", "created"]
MAXIMA = ["a_last", "a_request", "a_exporter", "b_last", "b_request", "b_exporter", "touched"]
ORS = ["a_flags", "b_flags"]
AGGREGATES = {
    **dict.fromkeys(SUMS, np.add),
    **dict.fromkeys(MINIMA, np.minimum),
    **dict.fromkeys(MAXIMA, np.maximum),
    **dict.fromkeys(ORS, np.bitwise_or),
}
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio, odd (Fibonacci hashing)
_SHIFT = np.uint64(29)


def key_hash(rows: Rows) -> np.ndarray:
    """A 64-bit hash of each row's session key (xor-multiply-shift over its words)."""
    small = (
        (rows["vrf_id"].astype(np.uint64) << np.uint64(32))
        | (rows["low_port"].astype(np.uint64) << np.uint64(16))
        | rows["high_port"].astype(np.uint64)
    )
    protocol = rows["protocol"].astype(np.uint64)
    value = np.zeros(len(protocol), np.uint64)
    for word in (protocol, small, rows["low_lo"], rows["high_lo"], rows["low_hi"], rows["high_hi"]):
        value ^= word
        value *= _MULTIPLIER
        value ^= value >> _SHIFT
    return value


class HashIndex:
    """Row numbers by key hash: open addressing with linear probing, at most half full.
    Every operation is vectorised: each numpy pass moves every pending hash one probe on."""

    def __init__(self, hashes: np.ndarray, room: int = 0):
        capacity = max(1024, 1 << (2 * (len(hashes) + room)).bit_length())
        self._bits = capacity.bit_length() - 1
        self._hashes = np.zeros(capacity, np.uint64)
        self._rows = np.full(capacity, -1, np.int64)
        self.size = 0
        self.find_or_add(hashes, 0)

    @property
    def nbytes(self) -> int:
        return self._hashes.nbytes + self._rows.nbytes

    def fits(self, more: int) -> bool:
        return 2 * (self.size + more) <= len(self._rows)

    def find_or_add(self, hashes: np.ndarray, first_row: int) -> tuple[np.ndarray, np.ndarray]:
        """Each hash's row: the indexed row with that hash, or else a new one. The new rows
        are numbered first_row, first_row + 1, ... in the order of their first hash.
        Returns (row of each hash, positions of the hashes that added a row); call `fits`
        first. Of two rows indexed with one hash (a collision the caller resolved), either."""
        count = len(hashes)
        found = np.empty(count, np.int64)
        claimed = np.zeros(count, dtype=bool)
        claimed_slot = np.empty(count, np.int64)
        slots = self._slots(hashes)
        pending = np.arange(count)
        mask = len(self._rows) - 1
        while len(pending):
            rows = self._rows[slots]
            empty = rows == -1  # (-2 - p marks a slot hash p claimed in this call)
            # an empty slot: the pending hashes there claim it (one wins, the rest look again)
            self._rows[slots[empty]] = -2 - pending[empty]
            won = empty.copy()
            won[empty] = self._rows[slots[empty]] == -2 - pending[empty]
            self._hashes[slots[won]] = hashes[pending[won]]
            claimed[pending[won]] = True
            claimed_slot[pending[won]] = slots[won]
            found[pending[won]] = -2 - pending[won]
            taken = ~empty & (self._hashes[slots] == hashes[pending])
            found[pending[taken]] = rows[taken]
            moving = ~empty & ~taken  # another hash's slot: probe the next
            slots[moving] = (slots[moving] + 1) & mask
            keep = ~won & ~taken
            pending, slots = pending[keep], slots[keep]
        # number the new rows in the order of their hashes, here and in the index
        added = np.flatnonzero(claimed)
        number = np.empty(count, np.int64)
        number[added] = first_row + np.arange(len(added))
        fresh = found < -1
        found[fresh] = number[-2 - found[fresh]]
        self._rows[claimed_slot[added]] = number[added]
        self.size += len(added)
        return found, added

    def _slots(self, hashes: np.ndarray) -> np.ndarray:
        return (hashes >> np.uint64(64 - self._bits)).astype(np.int64)


class ActiveSessions:
    """Canonical sessions, one row per key, in the order they arrived, and their index.

    The columns have room to grow (by half at a time), so a merge costs what the new rows
    cost, not a copy of the table. A merge changes no session until every check has passed
    (a failure on the way rebuilds the index from the sessions)."""

    def __init__(self, columns: Rows):
        self._columns = columns
        self._size = len(columns["hash"])
        self._index = HashIndex(columns["hash"])

    def __len__(self) -> int:
        return self._size

    @property
    def columns(self) -> Rows:
        """The sessions' columns (views: writing into them changes the sessions)."""
        return {name: column[: self._size] for name, column in self._columns.items()}

    @property
    def nbytes(self) -> int:
        return sum(column.nbytes for column in self._columns.values()) + self._index.nbytes

    @classmethod
    def of(cls, parts: list[Rows]) -> ActiveSessions:
        sessions = cls({name: column[:0] for name, column in parts[0].items()})
        sessions.merge(parts)
        return sessions

    def take(self, mask: np.ndarray) -> ActiveSessions:
        """The sessions where `mask` holds, in the same order."""
        return ActiveSessions(take(self.columns, mask))

    def merge(self, parts: list[Rows]) -> None:
        """Merge these rows into the sessions."""
        rows = concat(parts)
        if len(rows["hash"]) == 0:
            return
        self._make_room(len(rows["hash"]))
        try:  # the index takes the new rows before the columns do: undone on a failure
            target, added = self._index.find_or_add(rows["hash"], self._size)
            general = self._keys_differ(rows, target, added)
            general = general or _sums_may_overflow(self.columns, rows)
        except BaseException:
            self._index = HashIndex(self.columns["hash"], room=len(rows["hash"]))
            raise
        if general:
            return self._reset([self.columns, rows])
        end = self._size + len(added)
        for name, column in self._columns.items():
            np.take(rows[name], added, out=column[self._size : end])
        rest = np.ones(len(target), dtype=bool)
        rest[added] = False
        if rest.any():
            into = target[rest]
            for name, aggregate in AGGREGATES.items():
                aggregate.at(self._columns[name], into, rows[name][rest])
        self._size = end

    def _keys_differ(self, rows: Rows, target: np.ndarray, added: np.ndarray) -> bool:
        """Does any row's key differ from its session's (one hash, two keys)?"""
        old = target < self._size
        # a new session's key is that of the row that added it: session size + k, row added[k]
        source = np.zeros(len(target), np.int64)
        source[~old] = added[target[~old] - self._size]
        at = np.where(old, target, 0)
        for name in KEY:
            column = self._columns[name]
            expected = np.where(old, column[at], rows[name][source])
            if (expected != rows[name]).any():
                return True
        return False

    def _reset(self, parts: list[Rows]) -> None:
        """The general path: everything reduced again (sorted by hash and key)."""
        reduced = reduce_all(concat(parts))
        index = HashIndex(reduced["hash"])
        self._columns, self._size, self._index = reduced, len(reduced["hash"]), index

    def _make_room(self, more: int) -> None:
        """Room for `more` rows in the columns and the index (new arrays: nothing changes)."""
        capacity = len(self._columns["hash"])
        if self._size + more > capacity:
            grown = max(self._size + more, capacity + capacity // 2)
            columns = {}
            for name, column in self._columns.items():
                columns[name] = np.empty(grown, column.dtype)
                columns[name][: self._size] = column[: self._size]
            self._columns = columns
        if not self._index.fits(more):
            self._index = HashIndex(self._columns["hash"][: self._size], room=more)


def concat(parts: list[Rows]) -> Rows:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def take(rows: Rows, index: np.ndarray) -> Rows:
    return {name: column[index] for name, column in rows.items()}


def reduce_all(rows: Rows) -> Rows:
    """Rows sorted by (hash, key) and reduced to one per key: right whatever the hashes."""
    order = np.lexsort([rows[name] for name in reversed(["hash", *KEY])])
    changed = np.zeros(max(len(order) - 1, 0), dtype=bool)
    for name in ["hash", *KEY]:
        column = rows[name][order]
        changed |= column[1:] != column[:-1]
    starts = np.flatnonzero(np.concatenate(([True], changed)))
    reduced = {}
    for name, column in rows.items():
        sorted_column = column[order]
        aggregate = AGGREGATES.get(name)
        if len(starts) == len(order) or len(order) == 0:  # every key once
            reduced[name] = sorted_column
        elif aggregate is np.add:
            reduced[name] = saturating_group_sums(sorted_column, starts)
        elif aggregate is not None:
            reduced[name] = aggregate.reduceat(sorted_column, starts)
        else:  # the key and its hash: equal within a group
            reduced[name] = sorted_column[starts]
    return reduced


def _sums_may_overflow(table: Rows, rows: Rows) -> bool:
    """Could a session's sum pass 2**64-1? (then the general path saturates it exactly)"""
    count = len(rows["hash"])
    for name in SUMS:
        largest = int(table[name].max()) if len(table[name]) else 0
        if largest + int(rows[name].max()) * count >= 2**64:
            return True
    return False
