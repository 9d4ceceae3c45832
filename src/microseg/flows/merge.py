"""The active sessions as numpy columns, and the merge of flow records into them.

Each session is one row, in the order sessions arrived; a hash index (open addressing,
linear probing, at most half full) finds a session's row from its key. Merging a batch of
records costs what the batch costs, not a pass over the table: every record looks its key
up (vectorised: one numpy pass per probe step over the records still probing, never Python
per record), records of new sessions append rows, and each record's counters are added
into its row where it stands (`ufunc.at`, so records of one session in one batch all count).

Keys are always compared, never trusted to their hash: a record whose row holds another
key (two keys with one hash, about once in 2**64 / n**2, the seed being random per table so
that no input can be crafted for it) makes the index start again with a new seed before
anything changes. What a merge gives is exactly `GROUP BY key` over every record merged,
with these aggregates (tests/flows/test_session_merge.py holds it to that, on DuckDB):
packets and bytes add up, saturating at 2**64-1 (RFC 7011 counters are unsigned64); first
seen takes the minimum, last seen and the exporter id the maximum, TCP flags (with the ICMP
echo request mark above them) are or-ed; created takes the minimum, touched the maximum.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

UINT64_MAX = (1 << 64) - 1
NO_TIME = np.iinfo(np.int64).max  # "no packet in this direction" for min(first)
REQUEST = np.uint32(1 << 16)  # an ICMP echo request, or-ed into a direction's flags

KEY: dict[str, np.dtype] = {
    "vrf_id": np.dtype(np.uint32),
    "protocol": np.dtype(np.uint8),
    "low_hi": np.dtype(np.uint64),
    "low_lo": np.dtype(np.uint64),
    "low_port": np.dtype(np.uint16),
    "high_hi": np.dtype(np.uint64),
    "high_lo": np.dtype(np.uint64),
    "high_port": np.dtype(np.uint16),
}
# per canonical direction (a: from the low endpoint, b: from the high one): the value a
# new session starts from, which every aggregate leaves as it is
DIRECTION: dict[str, tuple[np.dtype, int]] = {
    "packets": (np.dtype(np.uint64), 0),
    "bytes": (np.dtype(np.uint64), 0),
    "first": (np.dtype(np.int64), NO_TIME),
    "last": (np.dtype(np.int64), -1),
    "flags": (np.dtype(np.uint32), 0),  # TCP flags | REQUEST
    "exporter": (np.dtype(np.uint32), 0),
}
COLUMNS: dict[str, tuple[np.dtype, float]] = {
    **{name: (kind, 0) for name, kind in KEY.items()},
    **{f"{side}_{name}": start for side in "ab" for name, start in DIRECTION.items()},
    "created": (np.dtype(np.float64), np.inf),
    "touched": (np.dtype(np.float64), -np.inf),
    "hash": (np.dtype(np.uint64), 0),
}
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio, odd
_SHIFT = np.uint64(31)
EMPTY = -1  # an index slot without a row
INDEX_SLOTS = 1 << 16  # the smallest index


@dataclass
class Direction:
    """What records add to one side of their sessions: `rows` picks the records (all, or
    those of one orientation), `carried` those that carried packets (None: all of them);
    only bytes count from records without packets (a record may count bytes alone)."""

    rows: np.ndarray | slice
    side: str  # "a" or "b"
    packets: np.ndarray
    bytes: np.ndarray
    first: np.ndarray
    last: np.ndarray
    flags: np.ndarray  # uint32, REQUEST or-ed in
    exporter: np.ndarray  # uint32 ids
    carried: np.ndarray | None = None


def key_hash(key: dict[str, np.ndarray], seed: np.uint64) -> np.ndarray:
    """A 64-bit hash of each key (multiply, xor-shift over its words)."""
    small = (
        (key["vrf_id"].astype(np.uint64) << np.uint64(32))
        | (key["low_port"].astype(np.uint64) << np.uint64(16))
        | key["high_port"].astype(np.uint64)
    )
    value = key["protocol"].astype(np.uint64) ^ seed
    for word in (small, key["low_lo"], key["high_lo"], key["low_hi"], key["high_hi"]):
        value *= _MULTIPLIER
        value ^= value >> _SHIFT
        value ^= word
    value *= _MULTIPLIER
    value ^= value >> _SHIFT
    return value


class ActiveSessions:
    """Sessions as columns and their key index.

    The columns are reserved for `reserve` sessions up front: memory the kernel maps only
    as rows are written, so a growing table is never copied (past the reserve it doubles,
    copied). The index has 4 to 8 slots a session: it doubles, rebuilt, when a quarter is
    used; few keys then share a probe sequence."""

    def __init__(self, reserve: int = 1024):
        self.size = 0
        self._columns = _allocate(max(reserve, 16))
        self._seed = _random_seed()
        self._slots = np.full(INDEX_SLOTS, EMPTY, np.int32)
        self._bounds = {f"{s}_{n}": 0 for s in "ab" for n in ("packets", "bytes")}
        self._latest = -np.inf  # the latest `now` merged: created and touched are at most it
        self._wide_keys = False  # some session has a VRF or an IPv6 address (high halves)

    def __len__(self) -> int:
        return self.size

    @property
    def capacity(self) -> int:
        return len(self._columns["hash"])

    @property
    def nbytes(self) -> int:
        """Bytes the sessions take (their rows, not the reserve unwritten) and the index."""
        row = sum(column.itemsize for column in self._columns.values())
        return self.size * row + self._slots.nbytes

    def columns(self) -> dict[str, np.ndarray]:
        """The sessions' columns (views: writing into them changes the sessions)."""
        return {name: column[: self.size] for name, column in self._columns.items()}

    def keep(self, mask: np.ndarray) -> None:
        """Keep the sessions where `mask` holds (in their order); the index is rebuilt."""
        kept = int(mask.sum())
        for column in self._columns.values():
            column[:kept] = column[: self.size][mask]
        self.size = kept
        self._rebuild()

    def merge(self, key: dict[str, np.ndarray], directions: list[Direction], now: float) -> None:
        """Merge records (their session `key` columns and what they add to each side) at
        collector time `now`. Nothing changes if this raises before the counters are added
        (an error in growing or indexing)."""
        count = len(key["protocol"])
        if not count:
            return
        self._make_room(count)
        wide = self._wide_keys or bool(
            key["vrf_id"].any() or key["low_hi"].any() or key["high_hi"].any()
        )
        while True:
            hashes = key_hash(key, self._seed)
            try:
                target, added = self._find_or_add(hashes)
            except BaseException:
                self._rebuild()
                raise
            end = self.size + len(added)
            for name, column in key.items():
                np.take(column, added, out=self._columns[name][self.size : end])
            self._columns["hash"][self.size : end] = hashes[added]
            if self._keys_match(key, target, wide):
                break
            self._seed = _random_seed()  # two keys share a hash: start again
            self._rebuild()
        for name, (_, start) in COLUMNS.items():
            if name not in KEY and name != "hash":
                self._columns[name][self.size : end] = start
        first_new, self.size, self._wide_keys = self.size, end, wide
        self._add(target, directions)
        created, touched = self._columns["created"], self._columns["touched"]
        if now >= self._latest:  # time goes on: the new sessions are created now
            created[first_new:end] = now
            touched[target] = now
            self._latest = now
            return
        for column, aggregate in ((created, np.minimum), (touched, np.maximum)):
            column[target] = aggregate(column[target], now)  # repeats write alike

    # -- the index ------------------------------------------------------------------------

    def _find_or_add(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each hash's row: the indexed row with that hash, else a new one, numbered from
        `size` in the order of the first record of each new hash. Returns (row of each
        record, position of the record that adds each new row)."""
        count = len(hashes)
        slots_of = self._slots
        mask = len(slots_of) - 1
        table_hash = self._columns["hash"]
        found = np.empty(count, np.int64)
        claimed_slot = np.full(count, -1, np.int64)
        pending = np.arange(count)
        slots = (hashes >> np.uint64(64 - mask.bit_length())).astype(np.int64)
        probe = hashes
        while len(pending):
            held = slots_of[slots]
            empty = held == EMPTY
            if empty.any():  # an empty slot: the records there claim it, one wins
                free, claimants = slots[empty], pending[empty]
                marks = -2 - claimants
                slots_of[free] = marks
                now_held = slots_of[free]
                winners = now_held == marks
                claimed_slot[claimants[winners]] = free[winners]
                held[empty] = now_held
            # a claimed slot holds -2 - its record, an indexed one its row
            indexed = held >= 0
            slot_hash = hashes[np.maximum(-2 - held, 0)]
            if indexed.any():
                slot_hash[indexed] = table_hash[held[indexed]]
            same = slot_hash == probe
            found[pending[same]] = held[same]
            if same.all():
                break
            moving = ~same
            pending, slots, probe = pending[moving], (slots[moving] + 1) & mask, probe[moving]
        added = np.flatnonzero(claimed_slot >= 0)
        number = np.empty(count, np.int64)
        number[added] = self.size + np.arange(len(added))
        fresh = found < 0
        found[fresh] = number[-2 - found[fresh]]
        slots_of[claimed_slot[added]] = number[added]
        return found, added

    def _keys_match(self, key: dict[str, np.ndarray], target: np.ndarray, wide: bool) -> bool:
        """Does every record's key equal its row's? (VRF and high halves are 0 in every
        row and record unless `wide`)"""
        names = KEY if wide else ("protocol", "low_lo", "low_port", "high_lo", "high_port")
        return all(np.array_equal(self._columns[name][target], key[name]) for name in names)

    def _rebuild(self, more: int = 0) -> None:
        """The index again from the sessions (after a removal, a growth, a new seed), with
        room for `more`."""
        while True:
            self._slots = np.full(_index_size(self.size + more), EMPTY, np.int32)
            rows = {name: self._columns[name][: self.size] for name in KEY}
            hashes = key_hash(rows, self._seed)
            size, self.size = self.size, 0
            self._columns["hash"][:size] = hashes
            try:
                _, added = self._find_or_add(hashes)
            finally:
                self.size = size
            if len(added) == size:  # every session its own row: no two share a hash
                return
            self._seed = _random_seed()

    def _make_room(self, more: int) -> None:
        if self.size + more > self.capacity:
            columns = _allocate(max(self.size + more, 2 * self.capacity))
            for name, column in self._columns.items():
                columns[name][: self.size] = column[: self.size]
            self._columns = columns
        if 4 * (self.size + more) > len(self._slots):
            self._rebuild(more)

    # -- the aggregates -------------------------------------------------------------------

    def _add(self, target: np.ndarray, directions: list[Direction]) -> None:
        for direction in directions:
            rows = target[direction.rows]
            side = direction.side
            for name in ("packets", "bytes"):
                self._saturating_add(f"{side}_{name}", rows, getattr(direction, name))
            first, last = direction.first, direction.last
            flags, exporter = direction.flags, direction.exporter
            if direction.carried is not None:
                carried = direction.carried
                rows, first, last = rows[carried], first[carried], last[carried]
                flags, exporter = flags[carried], exporter[carried]
            np.minimum.at(self._columns[f"{side}_first"], rows, first)
            np.maximum.at(self._columns[f"{side}_last"], rows, last)
            np.maximum.at(self._columns[f"{side}_exporter"], rows, exporter)
            _or_at(self._columns[f"{side}_flags"], rows, flags)

    def _saturating_add(self, name: str, rows: np.ndarray, values: np.ndarray) -> None:
        """column[rows] += values, each session's sum held at 2**64-1 (exactly: Python
        integers) when it could pass it; `_bounds` is at least the column's largest value."""
        if not len(rows):
            return
        column = self._columns[name]
        most = int(values.max()) * len(values)
        if self._bounds[name] + most > UINT64_MAX:
            self._bounds[name] = int(column[: self.size].max())
        if self._bounds[name] + most <= UINT64_MAX:
            np.add.at(column, rows, values)
            self._bounds[name] += most
            return
        distinct, inverse = np.unique(rows, return_inverse=True)
        sums = column[distinct].astype(object)
        np.add.at(sums, inverse.reshape(-1), values.astype(object))
        column[distinct] = np.array([min(int(total), UINT64_MAX) for total in sums], np.uint64)
        self._bounds[name] = int(column[: self.size].max())


def _or_at(column: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """column[rows] |= values with repeated rows all counted (np.bitwise_or.at, much
    faster): a fancy assignment keeps one of a row's writes; the rows missing bits go again."""
    while len(rows):
        column[rows] |= values
        missing = (column[rows] & values) != values
        rows, values = rows[missing], values[missing]


def _allocate(capacity: int) -> dict[str, np.ndarray]:
    return {name: np.empty(capacity, kind) for name, (kind, _) in COLUMNS.items()}


def _index_size(sessions: int) -> int:
    """Slots for `sessions`: a power of two, 8 times as many (4 at the next rebuild)."""
    return max(INDEX_SLOTS, 1 << (8 * sessions - 1).bit_length())


def _random_seed() -> np.uint64:
    return np.uint64(int.from_bytes(os.urandom(8), "little"))
