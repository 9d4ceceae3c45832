"""Session table: uniflow and biflow records merged into bidirectional sessions.

Each record is turned around into a *canonical* orientation (the lower endpoint first, by
address then port) so both directions of a conversation land on one key
(VRF, protocol, low endpoint, high endpoint); packets, bytes, first/last seen and TCP flags
are kept per canonical direction. Every batch of records is merged into the active sessions
as it comes (`merge.py`: one row per session and a hash index of their keys, merged by a
compiled loop; a batch costs what its records cost, not a pass over the table); no Python
code runs per record or per session.

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
import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from microseg.flows.batch import FlowBatch, format_addresses
from microseg.flows.merge import ActiveSessions, Records
from microseg.model.ports import ICMP, ICMPV6, PROTOCOL_NAMES, TCP

# Counters saturate instead of overflowing: at 2**64-1 in the table (RFC 7011's unsigned64
# counters, merge.py), at INT64_MAX in stored sessions (Parquet int64, what every reader uses)
INT64_MAX = (1 << 63) - 1
RESERVE_ROWS = 4_000_000  # reserved, not written: see ActiveSessions
READ_ROWS = 65_536  # room for a batch past max_sessions before the oldest are evicted
EVICT_TO = 0.8  # past max_sessions, the least recently updated leave until 80 % remain
KEPT_EXPORTERS = 1024  # exporter names kept however few sessions use them
log = logging.getLogger("microseg.flows")
ECHO_REQUEST = {ICMP: 8, ICMPV6: 128}  # RFC 792, RFC 4443
SYN, ACK = 0x02, 0x10

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
class LeavingSessions:
    """Sessions that left the table, as they stood in it: parts of canonical columns
    (merge.COLUMNS), each with the exporter names its exporter ids stand for (ids are
    renumbered as exporters are forgotten). `oriented()` makes them SESSION_SCHEMA rows;
    the collector has its writer thread do that, off the receive loop."""

    parts: list[tuple[dict[str, np.ndarray], list[str]]] = field(default_factory=list)

    @property
    def num_rows(self) -> int:
        return sum(len(columns["protocol"]) for columns, _ in self.parts)

    def oriented(self) -> pa.Table:
        """The sessions initiator first (SESSION_SCHEMA), sorted (sort_sessions): what
        orient_parts gives, by the collector's compiled loops (orientation.py)."""
        if not self.parts:
            return SESSION_SCHEMA.empty_table()
        from microseg.flows.orientation import oriented_sessions  # numba: collector only

        return oriented_sessions(self.parts)


def orient_parts(parts: list[tuple[dict[str, np.ndarray], list[str]]]) -> pa.Table:
    """LeavingSessions' parts initiator first, sorted, by numpy and Arrow: the reference
    that the compiled orientation is held to, and what it falls back on (IPv6)."""
    tables = [orient(columns, exporters) for columns, exporters in parts]
    return tables[0] if len(tables) == 1 else sort_sessions(pa.concat_tables(tables))


@dataclass
class TableCounters:
    records_rejected: int = 0  # records of a batch that could not be merged (logged)
    counters_saturated: int = 0  # sessions written with a counter held at INT64_MAX
    sessions_evicted: int = 0  # sessions that left early because the table was full


class SessionTable:
    """Active sessions, in canonical orientation, as numpy rows (merge.ActiveSessions)."""

    def __init__(self, settings: SessionSettings | None = None):
        self.settings = settings or SessionSettings()
        self.counters = TableCounters()
        self._active = ActiveSessions(self._reserve())
        self._leaving = LeavingSessions()  # waiting to be taken (take_evicted)
        self._exporters: list[str] = [""]  # exporter id -> address; 0 = none
        self._exporter_ids: dict[tuple[int, int], int] = {}

    def __len__(self) -> int:
        return len(self._active)

    def _reserve(self) -> int:
        """Rows reserved for the active sessions: the most there may be (the limit and a
        batch past it), as far as RESERVE_ROWS (past them the columns double)."""
        return min(self.settings.max_sessions + READ_ROWS, RESERVE_ROWS)

    @property
    def nbytes(self) -> int:
        return self._active.nbytes

    def add(self, batch: FlowBatch, now: float | None = None) -> None:
        """Merge flow records in. An error merging a batch loses that batch (logged,
        counted), never the active table."""
        carried = (batch.packets > 0) | (batch.rev_packets > 0)
        if not carried.all():  # a record of no packets says nothing about a session
            batch = batch.take(carried)
        if not len(batch):
            return
        try:
            self._merged(self._records(batch), time.time() if now is None else now)
        except Exception:  # whatever it is, the collector must go on with the rest
            self.counters.records_rejected += len(batch)
            log.exception(
                "session table: %d flow records could not be merged and are dropped", len(batch)
            )
        self._evict_over_limit()

    def _merged(self, records: Records, now: float) -> None:
        self._active.merge(records, now)

    @property
    def evicted_rows(self) -> int:
        return self._leaving.num_rows

    def take_evicted(self) -> LeavingSessions:
        """Remove and return the sessions evicted since the last call."""
        leaving, self._leaving = self._leaving, LeavingSessions()
        return leaving

    def expire(self, now: float | None = None) -> LeavingSessions:
        """Remove and return sessions past their inactive or active timeout (and those
        evicted since the last take_evicted)."""
        now = time.time() if now is None else now
        columns = self._columns()
        done = (columns["touched"] <= now - self.settings.inactive_timeout) | (
            columns["created"] <= now - self.settings.active_timeout
        )
        if done.any():
            self._leave(done)
        return self.take_evicted()

    def flush(self) -> LeavingSessions:
        """Remove and return every session (shutdown)."""
        columns = self._columns()
        if len(columns["protocol"]):
            self._hand_over(columns, saturated_sessions(columns))
        self._clear()
        self._forget_exporters()
        return self.take_evicted()

    def _leave(self, leaving: np.ndarray) -> None:
        """The sessions where `leaving` holds leave the table, to be written out."""
        self._hand_over(*self._take(leaving))
        self._forget_exporters()

    def _hand_over(self, columns: dict[str, np.ndarray], saturated: int) -> None:
        """Leaving sessions' columns to be taken (take_evicted), with the exporter names
        their ids stand for now; `saturated`: how many hold a counter past what the store
        holds (INT64_MAX), counted."""
        self.counters.counters_saturated += saturated
        self._leaving.parts.append((columns, list(self._exporters)))

    def _columns(self) -> dict[str, np.ndarray]:
        """The active sessions' columns (merge.COLUMNS)."""
        return self._active.columns()

    def _take(self, leaving: np.ndarray) -> tuple[dict[str, np.ndarray], int]:
        """Remove the sessions where `leaving` holds; their columns, and how many of them
        hold a counter past INT64_MAX."""
        return self._active.remove(leaving)

    def _clear(self) -> None:
        self._active = ActiveSessions(self._reserve())

    def _evict_over_limit(self) -> None:
        """Past max_sessions, the least recently updated sessions leave (to be written out,
        never dropped) until EVICT_TO of the limit remain (of those updated at the same
        time, the earliest arrived first)."""
        limit = self.settings.max_sessions
        if len(self) <= limit:
            return
        columns = self._columns()
        leaving = least_recent(
            columns["touched"], columns["arrival"], len(self) - int(limit * EVICT_TO)
        )
        self.counters.sessions_evicted += int(np.count_nonzero(leaving))
        self._leave(leaving)

    def _forget_exporters(self) -> None:
        """Drop exporter ids no active session uses once they are the majority (of more
        than KEPT_EXPORTERS: a look at every session's exporters held the receive loop for
        20-40 ms at 500,000 sessions), so ever new (or spoofed) exporters cannot grow the
        table without end."""
        if len(self._exporters) <= KEPT_EXPORTERS:
            return
        columns = self._active.columns()
        used = np.zeros(len(self._exporters), dtype=bool)
        used[0] = True  # "no exporter"
        for column in ("a_exporter", "b_exporter"):
            used[columns[column]] = True
        if len(self._exporters) - used.sum() <= used.sum():
            return
        new_id = (np.cumsum(used) - 1).astype(np.uint32)
        self._exporters = [self._exporters[i] for i in np.flatnonzero(used).tolist()]
        self._exporter_ids = {
            pair: int(new_id[old]) for pair, old in self._exporter_ids.items() if used[old]
        }
        for column in ("a_exporter", "b_exporter"):
            ids = columns[column]
            ids[:] = new_id[ids]

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
            names = format_addresses(distinct_high[new], distinct_low[new]).to_pylist()
            for index, name in zip(new, names, strict=True):
                self._exporter_ids[pairs_seen[index]] = len(self._exporters)
                self._exporters.append(name)
        for index, pair in enumerate(pairs_seen):
            ids[index] = self._exporter_ids[pair]
        return ids[inverse.reshape(-1)]

    def _records(self, batch: FlowBatch) -> Records:
        """The batch's records as the merge takes them: the session key's ports (ICMP: see
        _service_ports), the echo request mark, the exporter ids."""
        src_port, dst_port, request = _service_ports(batch)
        return Records(
            vrf_id=batch.vrf_id,
            protocol=batch.protocol,
            src_hi=batch.src_hi,
            src_lo=batch.src_lo,
            src_port=src_port,
            dst_hi=batch.dst_hi,
            dst_lo=batch.dst_lo,
            dst_port=dst_port,
            request=request,
            packets=batch.packets,
            bytes=batch.bytes,
            rev_packets=batch.rev_packets,
            rev_bytes=batch.rev_bytes,
            start_ms=batch.start_ms,
            end_ms=batch.end_ms,
            tcp_flags=batch.tcp_flags,
            rev_tcp_flags=batch.rev_tcp_flags,
            exporter=self._exporter_column(batch.exporter_hi, batch.exporter_lo),
        )


def saturated_sessions(columns: dict[str, np.ndarray]) -> int:
    """How many sessions hold a counter past INT64_MAX (the store holds them at it)."""
    saturated = np.zeros(len(columns["protocol"]), dtype=bool)
    for name in ("a_packets", "a_bytes", "b_packets", "b_bytes"):
        saturated |= columns[name] > INT64_MAX
    return int(np.count_nonzero(saturated))


def least_recent(touched: np.ndarray, arrival: np.ndarray, count: int) -> np.ndarray:
    """A mask of the `count` least recently updated sessions, of those updated at the same
    time the earliest arrived (the smallest `arrival`), found by partitions: a sort of
    500,000 sessions held the receive loop for 0.1 s."""
    if count <= 0:
        return np.zeros(len(touched), dtype=bool)
    touched = np.ascontiguousarray(touched)  # a column of the rows: each value a cache line
    threshold = np.partition(touched, count - 1)[count - 1]
    leaving = touched < threshold
    ties = np.flatnonzero(touched == threshold)
    wanted = count - np.count_nonzero(leaving)  # at least 1: the threshold is the count-th value
    if wanted < len(ties):
        ties = ties[np.argpartition(arrival[ties], wanted - 1)[:wanted]]
    leaving[ties] = True
    return leaving


def orient(columns: dict[str, np.ndarray], exporters: list[str]) -> pa.Table:
    """Canonical sessions -> SESSION_SCHEMA rows, initiator first, sorted (sort_sessions);
    `exporters`: the names of the exporter ids in the columns."""
    c = dict(columns)
    for side in ("a_", "b_"):  # the echo request mark rides above the TCP flags
        c[side + "request"] = c[side + "flags"] >> 16
        c[side + "flags"] = c[side + "flags"] & np.uint32(0xFFFF)
    low_is_client = initiator_is_low(c)
    a, b = "a_", "b_"

    def pick(name: str, client: bool) -> np.ndarray:
        first, second = (a, b) if client else (b, a)
        return np.where(low_is_client, c[first + name], c[second + name])

    protocol = c["protocol"]
    fwd_packets, rev_packets = pick("packets", True), pick("packets", False)
    fwd_bytes, rev_bytes = pick("bytes", True), pick("bytes", False)
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
    names = pa.array(exporters, pa.string())
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
            "exporter": names.take(pick("exporter", True)),
            "rev_exporter": names.take(pick("exporter", False)),
            "fwd_tcp_flags": fwd_flags.astype(np.int32),
            "rev_tcp_flags": rev_flags.astype(np.int32),
            "sessions": np.ones(len(protocol), np.int64),
        },
        schema=SESSION_SCHEMA,
    )
    return sort_sessions(table)


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


PROTOCOLS = pa.array([PROTOCOL_NAMES.get(number, str(number)) for number in range(256)])


def _protocol_names(protocol: np.ndarray) -> pa.StringArray:
    return PROTOCOLS.take(protocol)


def _vrf_names(vrf_id: np.ndarray) -> pa.StringArray:
    distinct, inverse = np.unique(vrf_id, return_inverse=True)
    names = pa.array([vrf_name(v) for v in distinct.tolist()], pa.string())
    return names.take(inverse.reshape(-1))


def vrf_name(vrf_id: int) -> str:
    """ingressVRFID 0 (or absent) is the default VRF; others keep their number."""
    return "default" if vrf_id == 0 else str(vrf_id)


def sort_sessions(table: pa.Table) -> pa.Table:
    """The one deterministic order for sessions: first seen, then the key."""
    keys = ["first_seen", "vrf", "protocol", "src", "sport", "dst", "dport"]
    return table.sort_by([(key, "ascending") for key in keys])
