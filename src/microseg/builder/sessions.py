"""Sessions as numpy columns: the builder's input, whatever the sessions came from.

The session table (flow collector) gives one row per bidirectional session with the fields
`vrf, protocol, src, sport, dst, dport, fwd_packets, fwd_bytes, rev_packets, rev_bytes,
complete, half_open, first_seen, last_seen, exporter`; `src` is the side that opened the
session and a `sport`/`dport` of `eph` marks a summary of several sessions from ephemeral
client ports (the vZTX `session-table` does the same). `complete`/`half_open` are counts
(a single session has one of them set), so a summary row stands for their sum of sessions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from microseg.builder.addresses import AddressTable
from microseg.model import MicrosegError
from microseg.model.ports import PROTOCOL_NUMBERS

REQUIRED_FIELDS = ("protocol", "src", "sport", "dst", "dport")
EPHEMERAL = -1  # a port column value: summarised ephemeral client ports (`eph`)


@dataclass(frozen=True)
class SessionColumns:
    """One entry per session row; addresses are indices into `addresses`."""

    addresses: AddressTable
    vrf_names: tuple[str, ...]
    vrf: np.ndarray  # int32 index into vrf_names
    protocol: np.ndarray  # int16 IP protocol number
    src: np.ndarray  # int32 address index
    dst: np.ndarray
    sport: np.ndarray  # int32, EPHEMERAL for `eph`
    dport: np.ndarray
    fwd_packets: np.ndarray  # int64
    fwd_bytes: np.ndarray
    rev_packets: np.ndarray
    rev_bytes: np.ndarray
    complete: np.ndarray  # int64 count of complete sessions in the row
    half_open: np.ndarray
    sessions: np.ndarray  # int64 sessions the row stands for (>= 1)
    reply_tcp_flags: np.ndarray  # int64 TCP flags the server side sent (0 when unknown)
    first_seen: np.ndarray  # int64 ms since the epoch (UTC)
    last_seen: np.ndarray

    def __len__(self) -> int:
        return len(self.protocol)

    def take(self, mask: np.ndarray) -> SessionColumns:
        """The rows where `mask` holds (same address and VRF tables)."""
        fields = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            fields[name] = value[mask] if isinstance(value, np.ndarray) else value
        return SessionColumns(**fields)


def read_session_table(path: Path) -> pa.Table:
    """Sessions from a flow store directory or a Parquet, CSV or JSON-lines file, read by
    the flow store (client ports from 49152 up already folded into `eph` summaries)."""
    from microseg.flows.flowstore import read_sessions

    return read_sessions(path)


def session_columns(table: pa.Table) -> SessionColumns:
    """Normalise a session table (any of the field encodings above) into numpy columns."""
    missing = [name for name in REQUIRED_FIELDS if name not in table.column_names]
    if missing:
        raise MicrosegError(
            f"sessions: missing field(s) {', '.join(missing)} "
            f"(have: {', '.join(table.column_names) or 'none'})"
        )
    rows = table.num_rows
    src_codes, dst_codes, addresses = _address_columns(table)
    vrf_codes, vrf_names = _vrf_column(table, rows)
    complete = _count_column(table, "complete", rows, 0)
    half_open = _count_column(table, "half_open", rows, 0)
    if "sessions" in table.column_names:
        sessions = _count_column(table, "sessions", rows, 1)
    else:
        sessions = complete + half_open
    first_seen = _time_column(table, "first_seen", rows)
    last_seen = (
        _time_column(table, "last_seen", rows) if "last_seen" in table.column_names else first_seen
    )
    return SessionColumns(
        addresses=addresses,
        vrf_names=vrf_names,
        vrf=vrf_codes,
        protocol=_protocol_column(table["protocol"]),
        src=src_codes,
        dst=dst_codes,
        sport=_port_column(table["sport"], "sport"),
        dport=_port_column(table["dport"], "dport"),
        fwd_packets=_count_column(table, "fwd_packets", rows, 0),
        fwd_bytes=_count_column(table, "fwd_bytes", rows, 0),
        rev_packets=_count_column(table, "rev_packets", rows, 0),
        rev_bytes=_count_column(table, "rev_bytes", rows, 0),
        complete=complete,
        half_open=half_open,
        sessions=np.maximum(sessions, 1),
        reply_tcp_flags=_count_column(table, "rev_tcp_flags", rows, 0),
        first_seen=first_seen,
        last_seen=np.maximum(last_seen, first_seen),
    )


def _address_columns(table: pa.Table) -> tuple[np.ndarray, np.ndarray, AddressTable]:
    """src/dst as indices into one table of distinct addresses (parsed once each)."""
    both = pa.chunked_array(
        [chunk for name in ("src", "dst") for chunk in table[name].cast(pa.string()).chunks],
        type=pa.string(),
    )
    if both.null_count:
        raise MicrosegError("sessions: a src or dst address is empty")
    encoded = pc.dictionary_encode(both).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    addresses = AddressTable.parse(encoded.dictionary.to_pylist())
    rows = table.num_rows
    return codes[:rows], codes[rows:], addresses


def _vrf_column(table: pa.Table, rows: int) -> tuple[np.ndarray, tuple[str, ...]]:
    if "vrf" not in table.column_names:
        return np.zeros(rows, dtype=np.int32), ("default",)
    column = pc.fill_null(table["vrf"].cast(pa.string()), "default")
    encoded = pc.dictionary_encode(column).combine_chunks()
    names = tuple(str(v) for v in encoded.dictionary.to_pylist())
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32), names


def _protocol_column(column: pa.ChunkedArray) -> np.ndarray:
    """`tcp`/`UDP`/`6` -> IP protocol number."""
    if pa.types.is_integer(column.type):
        return column.to_numpy().astype(np.int16)
    encoded = pc.dictionary_encode(column.cast(pa.string())).combine_chunks()
    numbers = []
    for text in encoded.dictionary.to_pylist():
        value = str(text).strip().lower()
        if value.isdigit() and int(value) <= 255:
            numbers.append(int(value))
        elif value in PROTOCOL_NUMBERS:
            numbers.append(PROTOCOL_NUMBERS[value])
        else:
            raise MicrosegError(f"sessions: unknown protocol {text!r} (tcp, udp, icmp or a number)")
    lookup = np.array(numbers, dtype=np.int16)
    return lookup[encoded.indices.to_numpy(zero_copy_only=False)]


def _port_column(column: pa.ChunkedArray, name: str) -> np.ndarray:
    """Port numbers; `eph` (a summary of ephemeral client ports) -> EPHEMERAL."""
    if pa.types.is_integer(column.type):
        ports = column.to_numpy(zero_copy_only=False)
    else:
        # JSON lines mixing numbers and `"eph"` arrive as JSON text: drop the quotes.
        text = pc.utf8_trim(column.cast(pa.string()), ' "')
        text = pc.if_else(pc.equal(pc.utf8_lower(text), "eph"), "-1", text)
        try:
            ports = pc.cast(text, pa.int32()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid as error:
            raise MicrosegError(
                f"sessions: {name} must be a port number or eph ({error})"
            ) from None
    ports = np.nan_to_num(np.asarray(ports, dtype=np.float64), nan=0).astype(np.int32)
    if ((ports < EPHEMERAL) | (ports > 65535)).any():
        raise MicrosegError(f"sessions: {name} out of range 0-65535")
    return ports


def _count_column(table: pa.Table, name: str, rows: int, default: int) -> np.ndarray:
    if name not in table.column_names:
        return np.full(rows, default, dtype=np.int64)
    column = table[name]
    if pa.types.is_boolean(column.type):
        column = column.cast(pa.int64())
    try:
        values = pc.fill_null(column.cast(pa.int64()), default)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise MicrosegError(f"sessions: {name} must be a number") from None
    return values.to_numpy().astype(np.int64)


def _time_column(table: pa.Table, name: str, rows: int) -> np.ndarray:
    """Timestamps (ISO 8601 text, Arrow timestamps or epoch seconds/ms) -> ms since epoch."""
    if name not in table.column_names:
        return np.zeros(rows, dtype=np.int64)
    column = table[name]
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        column = _parse_iso(column, name)
    # A missing time (a session file without it) reads as the epoch, never as NaN.
    if pa.types.is_timestamp(column.type):
        milliseconds = column.cast(pa.timestamp("ms", tz=column.type.tz)).cast(pa.int64())
        return pc.fill_null(milliseconds, 0).to_numpy().astype(np.int64)
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        values = pc.fill_null(column.cast(pa.float64()), 0).to_numpy()
        # Epoch seconds are below 1e11 until the year 5138; larger values are milliseconds.
        return np.where(values < 1e11, values * 1000, values).astype(np.int64)
    raise MicrosegError(f"sessions: {name} must be a timestamp, got {column.type}")


def _parse_iso(column: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    text = pc.replace_substring(pc.utf8_trim_whitespace(column), "Z", "+00:00")
    for fmt in ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z"):
        try:
            return pc.strptime(pc.replace_substring_regex(text, r"\.\d+", ""), fmt, "ms")
        except pa.ArrowInvalid:
            continue
    try:
        return pc.cast(column, pa.timestamp("ms"))
    except pa.ArrowInvalid:
        raise MicrosegError(f"sessions: {name} is not an ISO 8601 time") from None


def iso_time(milliseconds: int) -> str:
    """ms since the epoch -> `2025-11-19T18:53:40Z` (UTC, second precision)."""
    return datetime.fromtimestamp(milliseconds / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str, option: str) -> int:
    """A --since/--until value (ISO 8601; UTC when no zone is given) -> ms since epoch."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise MicrosegError(
            f"{option}: {text!r} is not an ISO 8601 time such as 2025-11-19T18:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
