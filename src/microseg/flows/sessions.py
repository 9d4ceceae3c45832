"""Session table: uniflow and biflow records merged into bidirectional sessions.

Each record is turned around into a *canonical* orientation (the lower endpoint first, by
address then port) so both directions of a conversation land on one key
(VRF, protocol, low endpoint, high endpoint); packets, bytes, first/last seen and TCP flags
are kept per canonical direction. Merging is a DuckDB hash group-by over whole batches; no
Python code runs per record or per session. A merge that the waiting records start runs on
a thread of its own (DuckDB leaves the GIL while it works), so the collector keeps reading
its sockets meanwhile instead of letting the kernel's buffer fill for the merge's length;
everything that reads the table waits for it first, so the merges and their results are
the same as one after another.

Only when sessions leave the table (timeouts, flush) is the initiator worked out, because
exporters do not say who started a conversation (softflowd's "forward" is the lower
address): a TCP direction that carried a SYN the other did not, an ICMP echo request, the
earlier first packet, and last the ports (the server's port is the smaller one).

Definitions (also in the README):
* complete — TCP: both directions carried packets, the initiator sent a SYN and the responder
  a SYN+ACK (when the exporter reports no TCP flags: both directions carried packets);
  other protocols: both directions carried packets.
* half_open — only the initiator's direction carried packets (an unanswered SYN, a DNS query
  that got no reply).
* A TCP session with packets both ways but no handshake (a RST answer, a mid-stream start)
  is neither.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from microseg import duck
from microseg.flows.batch import FlowBatch, format_addresses
from microseg.model.ports import ICMP, ICMPV6, PROTOCOL_NAMES, TCP

NO_TIME = np.iinfo(np.int64).max  # "no packet in this direction" for min(first)
# Counters saturate instead of overflowing: at UINT64_MAX in the table (RFC 7011's
# unsigned64 counters), at INT64_MAX in stored sessions (Parquet int64, what every reader uses)
UINT64_MAX = (1 << 64) - 1
INT64_MAX = (1 << 63) - 1
MERGE_ROWS = 500_000  # records waiting before they are merged (at most max_sessions)
THREAD_MERGE_ROWS = 100_000  # a merge of this many records or more runs on a thread
EVICT_TO = 0.8  # past max_sessions, the least recently updated leave until 80 % remain
log = logging.getLogger("microseg.flows")
ECHO_REQUEST = {ICMP: 8, ICMPV6: 128}  # RFC 792, RFC 4443
SYN, ACK = 0x02, 0x10

KEY = ["vrf_id", "protocol", "low_hi", "low_lo", "low_port", "high_hi", "high_lo", "high_port"]

SESSION_SCHEMA = pa.schema(
    [
        ("vrf", pa.string()),
        ("protocol", pa.string()),
        ("src", pa.string()),
        ("sport", pa.int32()),
        ("dst", pa.string()),
        ("dport", pa.int32()),
        ("fwd_packets", pa.int64()),
        ("fwd_bytes", pa.int64()),
        ("rev_packets", pa.int64()),
        ("rev_bytes", pa.int64()),
        ("complete", pa.int64()),
        ("half_open", pa.int64()),
        ("first_seen", pa.timestamp("ms", tz="UTC")),
        ("last_seen", pa.timestamp("ms", tz="UTC")),
        ("exporter", pa.string()),
        ("rev_exporter", pa.string()),
        ("fwd_tcp_flags", pa.int32()),
        ("rev_tcp_flags", pa.int32()),
        ("sessions", pa.int64()),
    ]
)

_DIRECTION = [
    ("packets", pa.uint64()),
    ("bytes", pa.uint64()),
    ("first", pa.int64()),
    ("last", pa.int64()),
    ("flags", pa.uint16()),
    ("request", pa.uint8()),
    ("exporter", pa.uint32()),
]
CANONICAL_SCHEMA = pa.schema(
    [
        ("vrf_id", pa.uint32()),
        ("protocol", pa.uint8()),
        ("low_hi", pa.uint64()),
        ("low_lo", pa.uint64()),
        ("low_port", pa.uint16()),
        ("high_hi", pa.uint64()),
        ("high_lo", pa.uint64()),
        ("high_port", pa.uint16()),
        *[("a_" + name, kind) for name, kind in _DIRECTION],
        *[("b_" + name, kind) for name, kind in _DIRECTION],
        ("created", pa.float64()),
        ("touched", pa.float64()),
    ]
)


def _saturated_sum(column: str) -> str:
    return f"least(sum({column}), {UINT64_MAX})::UBIGINT AS {column}"


_MERGE = f"""
SELECT {", ".join(KEY)},
       {_saturated_sum("a_packets")}, {_saturated_sum("a_bytes")},
       min(a_first) AS a_first, max(a_last) AS a_last, bit_or(a_flags) AS a_flags,
       max(a_request) AS a_request, max(a_exporter) AS a_exporter,
       {_saturated_sum("b_packets")}, {_saturated_sum("b_bytes")},
       min(b_first) AS b_first, max(b_last) AS b_last, bit_or(b_flags) AS b_flags,
       max(b_request) AS b_request, max(b_exporter) AS b_exporter,
       min(created) AS created, max(touched) AS touched
FROM rows GROUP BY ALL
"""


@dataclass(frozen=True)
class SessionSettings:
    """Timeouts are collector time: inactive = no record for the session for that long;
    active = a session older than that is written out and starts afresh (EOS flow tracking
    defaults: inactive 15 s, active 1800 s). At most `max_sessions` are active: past it the
    least recently updated sessions leave the table early (evicted, to be written out)."""

    inactive_timeout: float = 15.0
    active_timeout: float = 1800.0
    max_sessions: int = 1_000_000


@dataclass
class TableCounters:
    records_rejected: int = 0  # records of a batch that could not be merged (logged)
    counters_saturated: int = 0  # sessions written with a counter held at INT64_MAX
    sessions_evicted: int = 0  # sessions that left early because the table was full


class SessionTable:
    """Active sessions, in canonical orientation, as one Arrow table."""

    def __init__(self, settings: SessionSettings | None = None):
        self.settings = settings or SessionSettings()
        self.counters = TableCounters()
        self._sessions: pa.Table | None = None
        self._waiting: list[pa.Table] = []
        self._waiting_rows = 0
        self._merge_rows = max(1, min(MERGE_ROWS, self.settings.max_sessions))
        self._merging: _Merge | None = None  # a merge running on its thread
        self.thread_merge_rows = THREAD_MERGE_ROWS  # tests set 1 (all) or more than any
        self._evicted: list[pa.Table] = []  # oriented, waiting to be written
        self._exporters: list[str] = [""]  # exporter id -> address; 0 = none
        self._exporter_ids: dict[tuple[int, int], int] = {}
        self._connection = duck.connect()
        # One thread: a collector's parallelism is its receive workers (a process per core);
        # DuckDB's threads on top cost ~1.5x the CPU per merged record (bench/collector.py)
        # and take the other workers' cores.
        self._connection.execute("SET threads = 1")

    def __len__(self) -> int:
        self._merge()
        return 0 if self._sessions is None else self._sessions.num_rows

    @property
    def nbytes(self) -> int:
        self._merge()
        return 0 if self._sessions is None else self._sessions.nbytes

    def add(self, batch: FlowBatch, now: float | None = None) -> None:
        """Take flow records in; they are merged lazily, in large groups."""
        carried = (batch.packets > 0) | (batch.rev_packets > 0)
        if not carried.all():  # a record of no packets says nothing about a session
            batch = batch.take(carried)
        if not len(batch):
            return
        self._waiting.append(self._canonical_rows(batch, time.time() if now is None else now))
        self._waiting_rows += len(batch)
        if self._merging is not None and not self._merging.is_alive():
            self._finish_merge()
        if self._waiting_rows < self._merge_rows:
            return
        if self._waiting_rows < self.thread_merge_rows:  # short: not worth a thread
            self._merge()
            return
        self._finish_merge()  # one merge at a time: the next one needs its result
        waiting, self._waiting, self._waiting_rows = self._waiting, [], 0
        self._merging = _Merge(self, self._sessions, waiting)
        self._merging.start()

    @property
    def evicted_rows(self) -> int:
        return sum(table.num_rows for table in self._evicted)

    def take_evicted(self) -> pa.Table:
        """Remove and return (SESSION_SCHEMA) the sessions evicted since the last call,
        those of the merge running included."""
        self._finish_merge()
        evicted, self._evicted = self._evicted, []
        return pa.concat_tables(evicted) if evicted else SESSION_SCHEMA.empty_table()

    def expire(self, now: float | None = None) -> pa.Table:
        """Remove and return (SESSION_SCHEMA) sessions past their inactive or active timeout."""
        now = time.time() if now is None else now
        if not self._may_expire(now):  # no merge needed to know that none leaves
            return self.take_evicted()
        self._merge()
        if self._sessions is None:
            return self.take_evicted()
        touched = self._sessions.column("touched").to_numpy()
        created = self._sessions.column("created").to_numpy()
        done = (touched <= now - self.settings.inactive_timeout) | (
            created <= now - self.settings.active_timeout
        )
        if not done.any():
            return self.take_evicted()
        leaving = self._sessions.filter(pa.array(done))
        self._sessions = self._sessions.filter(pa.array(~done))
        self._evicted.append(self._oriented(leaving))
        self._forget_exporters()
        return self.take_evicted()

    def _may_expire(self, now: float) -> bool:
        """Could any session be past a timeout? A merged session is touched last when its
        latest row was and created when its earliest was, so unless some row, merged or
        waiting, is that old, none is: the flush that finds so (every one while the table is
        younger than the inactive timeout) costs no merge."""
        inactive = now - self.settings.inactive_timeout
        active = now - self.settings.active_timeout
        running = self._merging.waiting if self._merging is not None else []
        for rows in (self._sessions, *running, *self._waiting):
            if rows is None or not rows.num_rows:
                continue
            touched, created = pc.min(rows.column("touched")), pc.min(rows.column("created"))
            if touched.as_py() <= inactive or created.as_py() <= active:
                return True
        return False

    @property
    def merged_sessions(self) -> int:
        """Sessions in the table as of its last merge (records waiting not counted): what
        the collector reports without forcing a merge."""
        return 0 if self._sessions is None else self._sessions.num_rows

    def flush(self) -> pa.Table:
        """Remove and return every session (shutdown)."""
        self._merge()
        sessions, self._sessions = self._sessions, None
        if sessions is not None:
            self._evicted.append(self._oriented(sessions))
        self._forget_exporters()
        return self.take_evicted()

    # -- merging --------------------------------------------------------------------------

    def _merge(self) -> None:
        """Merge every waiting record into the table, after the merge running if any."""
        self._finish_merge()
        if not self._waiting:
            return
        waiting, self._waiting, self._waiting_rows = self._waiting, [], 0
        self._sessions = self._merged_with(self._sessions, waiting)
        self._evict_over_limit()

    def _finish_merge(self) -> None:
        """Wait for the merge running on its thread, if any, and take its table."""
        if self._merging is None:
            return
        merging, self._merging = self._merging, None
        merging.join()
        self._sessions = merging.result
        self._evict_over_limit()

    def _merged_with(self, sessions: pa.Table | None, waiting: list[pa.Table]) -> pa.Table | None:
        """`sessions` with `waiting` merged in. An error merging one batch loses that batch
        (logged, counted), never the active table or the other batches."""
        try:
            return self._merged([sessions, *waiting])
        except Exception:  # whatever it is, the collector must go on with the rest
            for part in waiting:
                try:
                    sessions = self._merged([sessions, part])
                except Exception:
                    self.counters.records_rejected += part.num_rows
                    log.exception(
                        "session table: %d flow records could not be merged and are dropped",
                        part.num_rows,
                    )
            return sessions

    def _merged(self, parts: list[pa.Table | None]) -> pa.Table:
        rows = pa.concat_tables([part for part in parts if part is not None])
        self._connection.register("rows", rows)
        try:
            return self._connection.sql(_MERGE).to_arrow_table().cast(CANONICAL_SCHEMA)
        finally:
            self._connection.unregister("rows")

    def _evict_over_limit(self) -> None:
        """Past max_sessions, the least recently updated sessions leave (to be written out,
        never dropped) until EVICT_TO of the limit remain."""
        limit = self.settings.max_sessions
        if self._sessions is None or self._sessions.num_rows <= limit:
            return
        keep = int(limit * EVICT_TO)
        touched = self._sessions.column("touched").to_numpy()
        order = np.argsort(touched, kind="stable")
        leaving = np.zeros(len(touched), dtype=bool)
        leaving[order[: len(touched) - keep]] = True
        self.counters.sessions_evicted += int(leaving.sum())
        self._evicted.append(self._oriented(self._sessions.filter(pa.array(leaving))))
        self._sessions = self._sessions.filter(pa.array(~leaving))
        self._forget_exporters()

    def _forget_exporters(self) -> None:
        """Drop exporter ids no active session uses once they are the majority, so ever new
        (or spoofed) exporters cannot grow the table without end. Waiting records hold
        exporter ids too: with any waiting, nothing is dropped (the next expiry does it)."""
        if self._waiting:
            return
        used = np.zeros(len(self._exporters), dtype=bool)
        used[0] = True  # "no exporter"
        if self._sessions is not None:
            for column in ("a_exporter", "b_exporter"):
                used[self._sessions.column(column).to_numpy()] = True
        if len(self._exporters) - used.sum() <= used.sum():
            return
        new_id = (np.cumsum(used) - 1).astype(np.uint32)
        self._exporters = [self._exporters[i] for i in np.flatnonzero(used).tolist()]
        self._exporter_ids = {
            pair: int(new_id[old]) for pair, old in self._exporter_ids.items() if used[old]
        }
        if self._sessions is not None:
            for column in ("a_exporter", "b_exporter"):
                index = self._sessions.schema.get_field_index(column)
                ids = new_id[self._sessions.column(column).to_numpy()]
                self._sessions = self._sessions.set_column(index, column, pa.array(ids))

    def _exporter_column(self, high: np.ndarray, low: np.ndarray) -> np.ndarray:
        if len(high) == 0:
            return np.empty(0, np.uint32)
        if (low == low[0]).all() and (high == high[0]).all():  # one exporter: no sort
            distinct_high, distinct_low = high[:1], low[:1]
            inverse = np.zeros(len(low), np.intp)
        elif (high == high[0]).all():  # IPv4 exporters, or one IPv6 prefix: a 64-bit sort
            distinct_low, inverse = np.unique(low, return_inverse=True)
            distinct_high = np.full(len(distinct_low), high[0])
        else:  # a sort of (high, low) records: much slower, only for mixed IPv6 exporters
            pairs = np.empty(len(high), dtype=[("hi", np.uint64), ("lo", np.uint64)])
            pairs["hi"], pairs["lo"] = high, low
            distinct, inverse = np.unique(pairs, return_inverse=True)
            distinct_high, distinct_low = distinct["hi"], distinct["lo"]
        ids = np.empty(len(distinct_low), np.uint32)
        pairs_seen = list(zip(distinct_high.tolist(), distinct_low.tolist(), strict=True))
        new = [index for index, pair in enumerate(pairs_seen) if pair not in self._exporter_ids]
        if new:
            names = format_addresses(distinct_high[new], distinct_low[new])
            for index, name in zip(new, names, strict=True):
                self._exporter_ids[pairs_seen[index]] = len(self._exporters)
                self._exporters.append(name)
        for index, pair in enumerate(pairs_seen):
            ids[index] = self._exporter_ids[pair]
        return ids[inverse.reshape(-1)]

    def _canonical_rows(self, batch: FlowBatch, now: float) -> pa.Table:
        src_port, dst_port, request = _service_ports(batch)
        if batch.src_hi.any() or batch.dst_hi.any():  # IPv6: the high halves decide first
            swap = (batch.src_hi > batch.dst_hi) | (
                (batch.src_hi == batch.dst_hi)
                & (
                    (batch.src_lo > batch.dst_lo)
                    | ((batch.src_lo == batch.dst_lo) & (src_port > dst_port))
                )
            )
        else:  # IPv4 (mapped, high halves 0): fewer passes
            swap = (batch.src_lo > batch.dst_lo) | (
                (batch.src_lo == batch.dst_lo) & (src_port > dst_port)
            )
        exporter = self._exporter_column(batch.exporter_hi, batch.exporter_lo)
        forward = _direction_stats(
            batch.packets, batch.bytes, batch.start_ms, batch.end_ms, batch.tcp_flags, request
        )
        # RFC 5103: reverse counters of a biflow run from destination to source; a batch of
        # uniflows has none, and its reverse side is the "no packet" constants
        reverse = (
            _direction_stats(
                batch.rev_packets,
                batch.rev_bytes,
                batch.start_ms,
                batch.end_ms,
                batch.rev_tcp_flags,
                np.zeros(len(batch), np.uint8),
            )
            if batch.rev_packets.any() or batch.rev_bytes.any()  # bytes count without packets
            else _NO_PACKETS
        )
        columns = {
            "vrf_id": batch.vrf_id,
            "protocol": batch.protocol,
            "low_hi": np.where(swap, batch.dst_hi, batch.src_hi),
            "low_lo": np.where(swap, batch.dst_lo, batch.src_lo),
            "low_port": np.where(swap, dst_port, src_port),
            "high_hi": np.where(swap, batch.src_hi, batch.dst_hi),
            "high_lo": np.where(swap, batch.src_lo, batch.dst_lo),
            "high_port": np.where(swap, src_port, dst_port),
        }
        for name in forward:
            columns["a_" + name] = np.where(swap, reverse[name], forward[name])
            columns["b_" + name] = np.where(swap, forward[name], reverse[name])
        has_forward, has_reverse = batch.packets > 0, batch.rev_packets > 0
        columns["a_exporter"] = np.where(np.where(swap, has_reverse, has_forward), exporter, 0)
        columns["b_exporter"] = np.where(np.where(swap, has_forward, has_reverse), exporter, 0)
        columns["created"] = np.full(len(batch), float(now))
        columns["touched"] = columns["created"]
        return pa.table(columns).select(CANONICAL_SCHEMA.names).cast(CANONICAL_SCHEMA)

    # -- leaving the table ----------------------------------------------------------------

    def _oriented(self, sessions: pa.Table) -> pa.Table:
        """Canonical sessions -> SESSION_SCHEMA rows, initiator first."""
        c = {name: sessions.column(name).to_numpy() for name in sessions.column_names}
        low_is_client = initiator_is_low(c)
        a, b = "a_", "b_"

        def pick(name: str, client: bool) -> np.ndarray:
            first, second = (a, b) if client else (b, a)
            return np.where(low_is_client, c[first + name], c[second + name])

        protocol = c["protocol"]
        fwd_packets, rev_packets = pick("packets", True), pick("packets", False)
        fwd_bytes, rev_bytes = pick("bytes", True), pick("bytes", False)
        saturated = np.zeros(len(protocol), dtype=bool)
        for counter in (fwd_packets, rev_packets, fwd_bytes, rev_bytes):
            saturated |= counter > INT64_MAX
        self.counters.counters_saturated += int(saturated.sum())
        fwd_flags, rev_flags = pick("flags", True), pick("flags", False)
        both = (fwd_packets > 0) & (rev_packets > 0)
        tcp = protocol == TCP
        no_flags = (fwd_flags | rev_flags) == 0
        handshake = ((fwd_flags & SYN) != 0) & ((rev_flags & (SYN | ACK)) == (SYN | ACK))
        complete = both & (~tcp | handshake | no_flags)
        half_open = (fwd_packets > 0) & (rev_packets == 0)
        src_hi = np.where(low_is_client, c["low_hi"], c["high_hi"])
        src_lo = np.where(low_is_client, c["low_lo"], c["high_lo"])
        dst_hi = np.where(low_is_client, c["high_hi"], c["low_hi"])
        dst_lo = np.where(low_is_client, c["high_lo"], c["low_lo"])
        first = np.minimum(c["a_first"], c["b_first"])
        last = np.maximum(c["a_last"], c["b_last"])
        exporters = np.array(self._exporters, dtype=object)
        table = pa.table(
            {
                "vrf": _vrf_names(c["vrf_id"]),
                "protocol": _protocol_names(protocol),
                "src": format_addresses(src_hi, src_lo),
                "sport": np.where(low_is_client, c["low_port"], c["high_port"]).astype(np.int32),
                "dst": format_addresses(dst_hi, dst_lo),
                "dport": np.where(low_is_client, c["high_port"], c["low_port"]).astype(np.int32),
                "fwd_packets": _stored_count(fwd_packets),
                "fwd_bytes": _stored_count(fwd_bytes),
                "rev_packets": _stored_count(rev_packets),
                "rev_bytes": _stored_count(rev_bytes),
                "complete": complete.astype(np.int64),
                "half_open": half_open.astype(np.int64),
                "first_seen": pa.array(first, pa.timestamp("ms", tz="UTC")),
                "last_seen": pa.array(last, pa.timestamp("ms", tz="UTC")),
                "exporter": exporters[pick("exporter", True)],
                "rev_exporter": exporters[pick("exporter", False)],
                "fwd_tcp_flags": fwd_flags.astype(np.int32),
                "rev_tcp_flags": rev_flags.astype(np.int32),
                "sessions": np.ones(len(protocol), np.int64),
            },
            schema=SESSION_SCHEMA,
        )
        return sort_sessions(table)


class _Merge(threading.Thread):
    """One merge of waiting records into the active sessions, on its own thread; the table
    takes `result` once it joins (SessionTable._finish_merge)."""

    def __init__(self, table: SessionTable, sessions: pa.Table | None, waiting: list[pa.Table]):
        super().__init__(name="session-merge", daemon=True)
        self.table, self.sessions, self.waiting = table, sessions, waiting
        self.result: pa.Table | None = sessions

    def run(self) -> None:
        self.result = self.table._merged_with(self.sessions, self.waiting)


def initiator_is_low(c: dict[str, np.ndarray]) -> np.ndarray:
    """For each canonical session: did the lower endpoint start it? (evidence in order)."""
    a_has, b_has = c["a_packets"] > 0, c["b_packets"] > 0
    tcp = c["protocol"] == TCP
    a_syn, b_syn = (c["a_flags"] & SYN) != 0, (c["b_flags"] & SYN) != 0
    a_request, b_request = c["a_request"] > 0, c["b_request"] > 0
    return np.select(
        [
            a_has & ~b_has,
            b_has & ~a_has,
            tcp & a_syn & ~b_syn,
            tcp & b_syn & ~a_syn,
            a_request & ~b_request,
            b_request & ~a_request,
            c["a_first"] < c["b_first"],
            c["b_first"] < c["a_first"],
        ],
        [True, False, True, False, True, False, True, False],
        # same millisecond: the server's port is the smaller one
        default=c["low_port"] >= c["high_port"],
    )


def _stored_count(counter: np.ndarray) -> np.ndarray:
    """uint64 -> int64, saturating: 2^63 packets is stored as 2^63-1, never as negative."""
    return np.minimum(counter, np.uint64(INT64_MAX)).astype(np.int64)


def _service_ports(batch: FlowBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(src port, dst port, echo request) of each record as the session key takes them."""
    icmp = (batch.protocol == ICMP) | (batch.protocol == ICMPV6)
    if not icmp.any():
        return batch.src_port, batch.dst_port, np.zeros(len(batch), np.uint8)
    # softflowd and NFv9 exporters without icmpTypeCode put type/code into the dst port
    type_code = np.where(batch.icmp_type_code != 0, batch.icmp_type_code, batch.dst_port)
    echo_type = np.where(batch.protocol == ICMPV6, 128, 8)
    request = icmp & ((type_code >> 8) == echo_type)
    echo = request | (icmp & ((type_code >> 8) == np.where(batch.protocol == ICMPV6, 129, 0)))
    # echo request and reply meet on ports 0; other ICMP messages (errors) keep
    # type*256+code as their dst port (RFC 7012 icmpTypeCode), a session of their own
    src_port = np.where(icmp, 0, batch.src_port).astype(np.uint16)
    dst_port = np.where(echo, 0, np.where(icmp, type_code, batch.dst_port)).astype(np.uint16)
    return src_port, dst_port, request.astype(np.uint8)


# a direction that carried no packet, as _direction_stats gives it
_NO_PACKETS: dict[str, np.generic] = {
    "packets": np.uint64(0),
    "bytes": np.uint64(0),
    "first": np.int64(NO_TIME),
    "last": np.int64(-1),
    "flags": np.uint16(0),
    "request": np.uint8(0),
}


def _direction_stats(packets, octets, start, end, flags, request) -> dict[str, np.ndarray]:
    carried = packets > 0
    if carried.all():  # the usual uniflow record: nothing to blank out
        return {
            "packets": packets,
            "bytes": octets,
            "first": start,
            "last": end,
            "flags": flags.astype(np.uint16, copy=False),
            "request": request.astype(np.uint8, copy=False),
        }
    return {
        "packets": packets,
        "bytes": octets,
        "first": np.where(carried, start, NO_TIME),
        "last": np.where(carried, end, -1),
        "flags": np.where(carried, flags, 0).astype(np.uint16),
        "request": np.where(carried, request, 0).astype(np.uint8),
    }


def _protocol_names(protocol: np.ndarray) -> np.ndarray:
    names = np.array([PROTOCOL_NAMES.get(p, str(p)) for p in range(256)], dtype=object)
    return names[protocol.astype(np.intp)]


def _vrf_names(vrf_id: np.ndarray) -> np.ndarray:
    """ingressVRFID 0 (or absent) is the default VRF; others keep their number."""
    distinct, inverse = np.unique(vrf_id, return_inverse=True)
    names = np.array(["default" if v == 0 else str(v) for v in distinct.tolist()], dtype=object)
    return names[inverse.reshape(-1)]


def sort_sessions(table: pa.Table) -> pa.Table:
    """The one deterministic order for sessions: first seen, then the key."""
    keys = ["first_seen", "vrf", "protocol", "src", "sport", "dst", "dport"]
    return table.sort_by([(key, "ascending") for key in keys])
