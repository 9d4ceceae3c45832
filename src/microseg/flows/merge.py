"""The active sessions as rows, and the merge of flow records into them.

Each session is one row of a numpy structured array, numbered in the order sessions
arrived; a hash index (open addressing, linear probing, at most half full) finds a
session's row from its key. Merging a batch of records costs what the batch costs, not a
pass over the table: the records go through one compiled loop (`merge_loops.py`, numba)
that turns each to its canonical orientation, finds its session's row or appends one, and
adds its counters where the row stands. A row holds everything a record touches, so a
record costs the two or three cache lines of its row and one of the index.

Keys are always compared, never trusted to their hash: keys that share a hash only probe
further (the seed is random per table, so no input can be crafted to make them share one).
What a merge gives is exactly `GROUP BY key` over every record merged, with these
aggregates (tests/flows/test_session_merge.py holds it to that, on DuckDB): packets and
bytes add up, saturating at 2**64-1 (RFC 7011 counters are unsigned64); first seen takes
the minimum, last seen and the exporter id the maximum, TCP flags (with the ICMP echo
request mark above them) are or-ed, each over the records that carried packets that way;
created takes the minimum, touched the maximum.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, fields
from types import ModuleType

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
# per canonical direction (a: from the low endpoint, b: from the high one)
DIRECTION: dict[str, np.dtype] = {
    "packets": np.dtype(np.uint64),
    "bytes": np.dtype(np.uint64),
    "first": np.dtype(np.int64),  # NO_TIME until a record carried packets this way
    "last": np.dtype(np.int64),  # -1 until then
    "flags": np.dtype(np.uint32),  # TCP flags | REQUEST
    "exporter": np.dtype(np.uint32),
}
COLUMNS: dict[str, np.dtype] = {
    **KEY,
    **{f"{side}_{name}": kind for side in "ab" for name, kind in DIRECTION.items()},
    "created": np.dtype(np.float64),
    "touched": np.dtype(np.float64),
    # the order sessions arrived in (rows move when others leave): of sessions updated at
    # the same time, the earliest arrived is evicted first
    "arrival": np.dtype(np.int64),
}
# widest fields first: every field aligned, 145 bytes of fields in a 152-byte row
_ORDER = sorted(COLUMNS, key=lambda name: -COLUMNS[name].itemsize)
ROW = np.dtype(
    {
        "names": _ORDER,
        "formats": [COLUMNS[name] for name in _ORDER],
        "offsets": list(np.cumsum([0] + [COLUMNS[name].itemsize for name in _ORDER[:-1]])),
        "itemsize": 152,
    }
)
INDEX_SLOTS = 1 << 16  # the smallest index
HASH_MASK = UINT64_MAX  # the bits of a hash the index uses (tests keep fewer: collisions)


@dataclass
class Records:
    """Flow records as the merge takes them, each as its exporter sent it (source first).
    `src_port`/`dst_port` are the session key's (ICMP: see sessions._service_ports),
    `request` 1 for an ICMP echo request, `exporter` the exporter's id (0: none); the
    reverse counters are RFC 5103's, from destination to source."""

    vrf_id: np.ndarray  # uint32
    protocol: np.ndarray  # uint8
    src_hi: np.ndarray  # uint64
    src_lo: np.ndarray  # uint64
    src_port: np.ndarray  # uint16
    dst_hi: np.ndarray  # uint64
    dst_lo: np.ndarray  # uint64
    dst_port: np.ndarray  # uint16
    request: np.ndarray  # uint8
    packets: np.ndarray  # uint64
    bytes: np.ndarray  # uint64
    rev_packets: np.ndarray  # uint64
    rev_bytes: np.ndarray  # uint64
    start_ms: np.ndarray  # int64
    end_ms: np.ndarray  # int64
    tcp_flags: np.ndarray  # uint16
    rev_tcp_flags: np.ndarray  # uint16
    exporter: np.ndarray  # uint32

    def __len__(self) -> int:
        return len(self.protocol)

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The columns in field order, of the field's dtype and contiguous (the compiled
        merge is compiled for exactly these types: anything else would compile again)."""
        return tuple(
            np.ascontiguousarray(getattr(self, name), _RECORD_TYPES[name])
            for name in _RECORD_FIELDS
        )


_RECORD_TYPES: dict[str, type] = {
    **{name: np.uint64 for name in ("src_hi", "src_lo", "dst_hi", "dst_lo")},
    **{name: np.uint64 for name in ("packets", "bytes", "rev_packets", "rev_bytes")},
    **{name: np.uint16 for name in ("src_port", "dst_port", "tcp_flags", "rev_tcp_flags")},
    "vrf_id": np.uint32,
    "protocol": np.uint8,
    "request": np.uint8,
    "start_ms": np.int64,
    "end_ms": np.int64,
    "exporter": np.uint32,
}
_RECORD_FIELDS = [field.name for field in fields(Records)]


class ActiveSessions:
    """Sessions as rows and their key index.

    The rows are reserved for `reserve` sessions up front: memory the kernel maps only as
    rows are written, so a growing table is never copied (past the reserve it doubles,
    copied). The index is made for the reserve too (2 to 4 slots a session, at most half
    full), so it is never rebuilt larger while the table grows within it: that rebuild
    held a receive worker for 0.3 s at 500,000 sessions, long enough for the kernel to
    drop datagrams. Sessions that leave take their slots out of the index and the last
    rows move into theirs: what that costs grows with the sessions that leave, not with
    the table (refilling the whole index and moving every later row down held a worker
    for 0.04-0.09 s per eviction at 500,000 sessions)."""

    def __init__(self, reserve: int = 1024):
        self._loops = _compiled_loops()
        self.size = 0
        self.arrived = 0  # sessions ever added: the next one's arrival number
        self._rows = np.empty(max(reserve, 16), ROW)
        self._seed = _random_seed()
        self._hash_mask = np.uint64(HASH_MASK)
        self._slots = np.zeros(_index_size(len(self._rows)), np.uint64)

    def __len__(self) -> int:
        return self.size

    @property
    def capacity(self) -> int:
        return len(self._rows)

    @property
    def nbytes(self) -> int:
        """Bytes the sessions take (their rows, not the reserve unwritten) and the index."""
        return self.size * ROW.itemsize + self._slots.nbytes

    def columns(self) -> dict[str, np.ndarray]:
        """The sessions' columns (views: writing into them changes the sessions)."""
        rows = self._rows[: self.size]
        return {name: rows[name] for name in COLUMNS}

    def remove(self, leaving: np.ndarray) -> tuple[dict[str, np.ndarray], int]:
        """Remove the sessions where `leaving` holds; their columns (copies, in row order)
        and how many of them hold a counter past INT64_MAX (what the store cannot hold).
        Rows that stay may move (the last ones into the rows that left)."""
        out = np.empty(np.count_nonzero(leaving), ROW)
        self.size, saturated = self._loops.remove(
            self._rows,
            self.size,
            np.ascontiguousarray(leaving, np.bool_),
            out,
            self._slots,
            self._seed,
            self._hash_mask,
        )
        return {name: out[name] for name in COLUMNS}, int(saturated)

    def merge(self, records: Records, now: float) -> None:
        """Merge records at collector time `now` (a batch the table takes whole: room for
        every record is made first, so the compiled loop cannot fail half-way)."""
        count = len(records)
        if not count:
            return
        self._make_room(count)
        before = self.size
        self.size = self._loops.merge(
            self._rows,
            self.size,
            self._slots,
            self._seed,
            self._hash_mask,
            *records.arrays(),
            float(now),
            self.arrived,
        )
        self.arrived += self.size - before

    def _make_room(self, more: int) -> None:
        """Rows and index slots for `more` new sessions (past the reserve: copied, and the
        index rebuilt larger)."""
        if self.size + more > self.capacity:
            rows = np.empty(max(self.size + more, 2 * self.capacity), ROW)
            rows[: self.size] = self._rows[: self.size]
            self._rows = rows
        if 2 * (self.size + more) > len(self._slots):
            self._slots = np.zeros(_index_size(self.size + more), np.uint64)
            self._index_rows()

    def _index_rows(self) -> None:
        """The sessions into the (empty) index slots."""
        self._loops.index(self._rows, self.size, self._slots, self._seed, self._hash_mask)


def _compiled_loops() -> ModuleType:
    """merge_loops, its loops run once on a scratch table: numba compiles a function (or
    loads it from its cache) at its first call, which must not be a collector's first batch
    (its datagrams would wait in the socket meanwhile). Imported here, not at the top: only
    what merges sessions needs numba. (A numba function takes the types of its arguments at
    run time, which its annotations cannot say: the module is used untyped.)"""
    merge_loops = importlib.import_module("microseg.flows.merge_loops")
    if not _WARM:
        rows, slots = np.empty(1, ROW), np.zeros(16, np.uint64)
        one = Records(**{name: np.zeros(1, kind) for name, kind in _RECORD_TYPES.items()})
        seed, mask = _random_seed(), np.uint64(HASH_MASK)
        merge_loops.merge(rows, 0, slots, seed, mask, *one.arrays(), 0.0, 0)
        merge_loops.index(rows, 1, np.zeros(16, np.uint64), seed, mask)
        merge_loops.remove(rows, 1, np.ones(1, np.bool_), np.empty(1, ROW), slots, seed, mask)
        _WARM.append(True)
    return merge_loops


_WARM: list[bool] = []


def _index_size(sessions: int) -> int:
    """Slots for `sessions`: a power of two, 2 to 4 times as many."""
    return max(INDEX_SLOTS, 1 << (2 * sessions - 1).bit_length())


def _random_seed() -> np.uint64:
    return np.uint64(int.from_bytes(os.urandom(8), "little"))
