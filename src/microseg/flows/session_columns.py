"""Sessions as validated numpy columns: the one session-table reader.

`recommend` and `whatif` read sessions through `session_columns`, and `read_sessions` checks
every session file with it before anything else reads the file, so a file is accepted or
refused the same way by every command.

A session table has one row per bidirectional session: `vrf, protocol, src, sport, dst,
dport, fwd_packets, fwd_bytes, rev_packets, rev_bytes, complete, half_open, first_seen,
last_seen` and optionally `sessions`, `fwd_tcp_flags`, `rev_tcp_flags`; `packets` / `bytes`
are read as `fwd_packets` / `fwd_bytes`. `src` opened the session. A `sport`/`dport` of `eph`
marks a summary of sessions from ephemeral client ports (the vZTX `session-table` does the
same); an empty port is 0. `complete`/`half_open` are counts, so a summary row stands for
their sum of sessions. Only protocol, src, dst and dport are required; a missing vrf is
`default`, a missing counter 0, a missing time the epoch.

Every value is checked; a bad one is an error naming the row, its session and the field: an
empty or unknown protocol, an empty value or non-address in src/dst, a row mixing IPv4 and
IPv6, a port that is neither 0-65535 nor `eph`, a counter that is not a whole number from 0 to
2**63-1, a time that is not ISO 8601.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import NoReturn

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from microseg.model import Group, MicrosegError
from microseg.model.objects import IPAddress, IPNetwork
from microseg.model.ports import ICMPV6, PROTOCOL_NUMBERS

REQUIRED_FIELDS = ("protocol", "src", "dst", "dport")
EPHEMERAL = -1  # a port column value: summarised ephemeral client ports (`eph`)
COUNTER_ALIASES = {"fwd_packets": "packets", "fwd_bytes": "bytes"}
_WORD = (1 << 64) - 1
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class AddressTable:
    """Distinct addresses in first-seen order; sessions refer to them by index.

    Sessions repeat the same few thousand addresses millions of times, so each distinct
    address is parsed once and stored as (family, high 64 bits, low 64 bits); IPv4 lives in
    the low word. Prefix membership is vectorised over the two words.
    """

    addresses: tuple[IPAddress, ...]
    family: np.ndarray  # uint8: 4 or 6
    high: np.ndarray  # uint64: upper 64 bits (0 for IPv4)
    low: np.ndarray  # uint64: lower 64 bits (the whole IPv4 address)

    @classmethod
    def parse(cls, texts: list[str]) -> AddressTable:
        addresses = []
        for text in texts:
            try:
                addresses.append(ipaddress.ip_address(str(text).strip()))
            except ValueError:
                raise MicrosegError(f"sessions: {text!r} is not an IPv4 or IPv6 address") from None
        return cls.of(addresses)

    @classmethod
    def of(cls, addresses: list[IPAddress]) -> AddressTable:
        values = [int(a) for a in addresses]
        return cls(
            addresses=tuple(addresses),
            family=np.array([a.version for a in addresses], dtype=np.uint8),
            high=np.array([v >> 64 for v in values], dtype=np.uint64),
            low=np.array([v & _WORD for v in values], dtype=np.uint64),
        )

    def __len__(self) -> int:
        return len(self.addresses)

    def in_prefix(self, prefix: IPNetwork) -> np.ndarray:
        """Boolean mask: which addresses lie inside `prefix`."""
        network = int(prefix.network_address)
        mask = int(prefix.netmask)
        high_mask, low_mask = np.uint64(mask >> 64), np.uint64(mask & _WORD)
        high_net, low_net = np.uint64(network >> 64), np.uint64(network & _WORD)
        return (
            (self.family == prefix.version)
            & ((self.high & high_mask) == high_net)
            & ((self.low & low_mask) == low_net)
        )

    def in_prefixes(self, prefixes: tuple[IPNetwork, ...]) -> np.ndarray:
        inside = np.zeros(len(self), dtype=bool)
        for prefix in prefixes:
            inside |= self.in_prefix(prefix)
        return inside

    def in_group(self, group: Group) -> np.ndarray:
        """Members of a static group: inside a prefix and outside every except-prefix."""
        return self.in_prefixes(group.prefixes) & ~self.in_prefixes(group.except_prefixes)

    def longest_match(self, prefixes: tuple[IPNetwork, ...]) -> np.ndarray:
        """Per address, the longest prefix length of `prefixes` containing it; -1 if none."""
        best = np.full(len(self), -1, dtype=np.int16)
        for prefix in prefixes:
            inside = self.in_prefix(prefix)
            best = np.where(inside & (best < prefix.prefixlen), prefix.prefixlen, best)
        return best


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

    def renumbered(self, order: np.ndarray) -> SessionColumns:
        """The same sessions, their addresses numbered in `order` (the old index of each
        new one: a permutation)."""
        new_index = np.empty(len(order), dtype=np.int32)
        new_index[order] = np.arange(len(order), dtype=np.int32)
        table = self.addresses
        addresses = AddressTable(
            tuple(table.addresses[int(i)] for i in order),
            table.family[order],
            table.high[order],
            table.low[order],
        )
        return replace(self, addresses=addresses, src=new_index[self.src], dst=new_index[self.dst])


def icmp_types(protocol: np.ndarray, dport: np.ndarray) -> np.ndarray:
    """The ICMP type of each session's first message. Flow records carry type * 256 + code
    in the destination port (icmpTypeCodeIPv4, RFC 7012); 1-255 is a bare type; the session
    table zeroes echo ports and makes the echo requester the client, so 0 is an echo
    request (RFC 792 type 8, RFC 4443 type 128)."""
    echo_request = np.where(protocol == ICMPV6, 128, 8)
    return np.where(dport > 255, dport >> 8, np.where(dport <= 0, echo_request, dport))


def session_columns(table: pa.Table, where: str = "sessions") -> SessionColumns:
    """Check and convert a session table (see the module docstring); `where` names the
    source in error messages (a file name)."""
    missing = [name for name in REQUIRED_FIELDS if name not in table.column_names]
    if missing:
        raise MicrosegError(
            f"{where}: missing field(s) {', '.join(missing)} "
            f"(have: {', '.join(table.column_names) or 'none'})"
        )
    rows = table.num_rows
    locate = _Locator(table, where)
    src_codes, dst_codes, addresses = _address_columns(table, locate)
    vrf_codes, vrf_names = _vrf_column(table, rows)
    counts = {name: _count_column(table, name, locate) for name in _COUNTERS}
    if "sessions" in table.column_names:
        sessions = counts["sessions"]
    else:
        sessions = counts["complete"] + counts["half_open"]
    first_seen = _time_column(table, "first_seen", locate)
    last_seen = (
        _time_column(table, "last_seen", locate)
        if "last_seen" in table.column_names
        else first_seen
    )
    return SessionColumns(
        addresses=addresses,
        vrf_names=vrf_names,
        vrf=vrf_codes,
        protocol=_protocol_column(table["protocol"], locate),
        src=src_codes,
        dst=dst_codes,
        sport=_port_column(table, "sport", locate),
        dport=_port_column(table, "dport", locate),
        fwd_packets=counts["fwd_packets"],
        fwd_bytes=counts["fwd_bytes"],
        rev_packets=counts["rev_packets"],
        rev_bytes=counts["rev_bytes"],
        complete=counts["complete"],
        half_open=counts["half_open"],
        sessions=np.maximum(sessions, 1),
        reply_tcp_flags=counts["rev_tcp_flags"],
        first_seen=first_seen,
        last_seen=np.maximum(last_seen, first_seen),
    )


_COUNTERS = (
    "fwd_packets",
    "fwd_bytes",
    "rev_packets",
    "rev_bytes",
    "complete",
    "half_open",
    "rev_tcp_flags",
    "sessions",
)


class _Locator:
    """Turns the first bad row of a column into an error naming the row and its session."""

    def __init__(self, table: pa.Table, where: str):
        self.table = table
        self.where = where

    def fail(self, bad: np.ndarray, message: str) -> None:
        """Raise for the first row where `bad` holds, if any."""
        rows = np.flatnonzero(bad)
        if len(rows):
            self.fail_row(int(rows[0]), message)

    def fail_row(self, row: int, message: str) -> NoReturn:
        raise MicrosegError(f"{self.where}: row {row + 1}{self._session(row)}: {message}")

    def _session(self, row: int) -> str:
        values = {}
        for name in ("src", "sport", "dst", "dport"):
            if name in self.table.column_names:
                value = self.table[name][row].as_py()
                values[name] = "" if value is None else str(value).strip().strip('"')
        if not (values.get("src") or values.get("dst")):
            return ""
        ends = [
            f"{values.get(address, '')}" + (f":{values[port]}" if values.get(port) else "")
            for address, port in (("src", "sport"), ("dst", "dport"))
        ]
        return f" ({ends[0]} -> {ends[1]})"


def _text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A column as trimmed text, null as empty; JSON lines mixing numbers and strings arrive
    as JSON text, so surrounding quotes are dropped too."""
    return pc.fill_null(pc.utf8_trim(column.cast(pa.string()), ' "\t'), "")


def _empty(text: pa.ChunkedArray) -> np.ndarray:
    return pc.equal(text, "").to_numpy(zero_copy_only=False)


def _distinct(text: pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """The distinct values of a text column and each row's position among them."""
    encoded = pc.dictionary_encode(text).combine_chunks()
    return encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False)


def _address_columns(
    table: pa.Table, locate: _Locator
) -> tuple[np.ndarray, np.ndarray, AddressTable]:
    """src/dst as indices into one table of distinct addresses (parsed once each)."""
    rows = table.num_rows
    texts = {name: _text(table[name]) for name in ("src", "dst")}
    for name, text in texts.items():
        locate.fail(_empty(text), f"{name} is empty")
    both = pa.chunked_array(
        [chunk for name in ("src", "dst") for chunk in texts[name].chunks], type=pa.string()
    )
    encoded = pc.dictionary_encode(both).combine_chunks()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32)
    parsed = []
    for position, text in enumerate(encoded.dictionary.to_pylist()):
        try:
            parsed.append(ipaddress.ip_address(text))
        except ValueError:
            bad = np.flatnonzero(codes == position)[0]
            name = "src" if bad < rows else "dst"
            locate.fail_row(
                int(bad % rows) if rows else 0, f"{name} {text!r} is not an IPv4 or IPv6 address"
            )
    addresses = AddressTable.of(parsed)
    src, dst = codes[:rows], codes[rows:]
    locate.fail(addresses.family[src] != addresses.family[dst], "mixes IPv4 and IPv6 addresses")
    return src, dst, addresses


def _vrf_column(table: pa.Table, rows: int) -> tuple[np.ndarray, tuple[str, ...]]:
    if "vrf" not in table.column_names:
        return np.zeros(rows, dtype=np.int32), ("default",)
    text = _text(table["vrf"])
    column = pc.if_else(pc.equal(text, ""), "default", text)
    encoded = pc.dictionary_encode(column).combine_chunks()
    names = tuple(str(v) for v in encoded.dictionary.to_pylist())
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32), names


def _protocol_column(column: pa.ChunkedArray, locate: _Locator) -> np.ndarray:
    """`tcp`/`UDP`/`6` -> IP protocol number."""
    text = pc.utf8_lower(_text(column))
    locate.fail(_empty(text), "protocol is empty")
    values, indices = _distinct(text)
    numbers = []
    for position, value in enumerate(values):
        if value.isascii() and value.isdigit() and int(value) <= 255:
            numbers.append(int(value))
        elif value in PROTOCOL_NUMBERS:
            numbers.append(PROTOCOL_NUMBERS[value])
        else:
            locate.fail(
                indices == position,
                f"unknown protocol {value!r} (tcp, udp, icmp, icmpv6 or a number 0-255)",
            )
    return np.array(numbers, dtype=np.int16)[indices] if len(indices) else np.zeros(0, np.int16)


def _port_column(table: pa.Table, name: str, locate: _Locator) -> np.ndarray:
    """Port numbers; `eph` (a summary of ephemeral client ports) -> EPHEMERAL; empty -> 0."""
    if name not in table.column_names:
        return np.zeros(table.num_rows, dtype=np.int32)
    column = table[name]
    if pa.types.is_integer(column.type):
        ports = pc.fill_null(column.cast(pa.int64()), 0).to_numpy()
        locate.fail((ports < 0) | (ports > 65535), f"{name} is not a port 0-65535 or eph")
        return ports.astype(np.int32)
    values, indices = _distinct(pc.utf8_lower(_text(column)))
    numbers = []
    for position, value in enumerate(values):
        if value == "eph":
            numbers.append(EPHEMERAL)
        elif value == "":
            numbers.append(0)
        elif value.isascii() and value.isdigit() and int(value) <= 65535:
            numbers.append(int(value))
        else:
            locate.fail(indices == position, f"{name} {value!r} is not a port 0-65535 or eph")
    return np.array(numbers, dtype=np.int32)[indices] if len(indices) else np.zeros(0, np.int32)


def _count_column(table: pa.Table, name: str, locate: _Locator) -> np.ndarray:
    """A counter: a whole number from 0 to 2**63-1; missing or empty is 0."""
    source = name if name in table.column_names else COUNTER_ALIASES.get(name, name)
    if source not in table.column_names:
        return np.zeros(table.num_rows, dtype=np.int64)
    column = table[source]
    if pa.types.is_boolean(column.type):
        column = column.cast(pa.int64())
    if pa.types.is_unsigned_integer(column.type):
        big = pc.fill_null(pc.greater(column, pa.scalar(_INT64_MAX, column.type)), False)
        locate.fail(big.to_numpy(zero_copy_only=False), f"{source} is larger than 2**63-1")
    if pa.types.is_integer(column.type):
        values = pc.fill_null(column.cast(pa.int64()), 0).to_numpy()
    elif pa.types.is_floating(column.type):
        floats = pc.fill_null(column, 0).to_numpy(zero_copy_only=False)
        locate.fail(
            (floats != np.floor(floats)) | (np.abs(floats) > _INT64_MAX),
            f"{source} is not a whole number",
        )
        values = floats.astype(np.int64)
    else:
        values = _whole_numbers(_text(column), source, locate)
    locate.fail(values < 0, f"{source} is negative")
    return values.astype(np.int64)


def _whole_numbers(text: pa.ChunkedArray, name: str, locate: _Locator) -> np.ndarray:
    filled = pc.if_else(pc.equal(text, ""), "0", text)
    whole = pc.match_substring_regex(filled, r"^[-+]?[0-9]+$").to_numpy(zero_copy_only=False)
    locate.fail(~whole, f"{name} is not a whole number")
    try:
        return pc.cast(filled, pa.int64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        too_big = [abs(int(v)) > _INT64_MAX for v in filled.to_pylist()]
        locate.fail(np.array(too_big, dtype=bool), f"{name} is larger than 2**63-1")
        raise MicrosegError(f"{locate.where}: {name} is not a whole number") from None


def _time_column(table: pa.Table, name: str, locate: _Locator) -> np.ndarray:
    """Timestamps (ISO 8601 text, Arrow timestamps or epoch seconds/ms) -> ms since epoch.
    A missing time (a session file without it) reads as the epoch, never as NaN."""
    if name not in table.column_names:
        return np.zeros(table.num_rows, dtype=np.int64)
    column = table[name]
    if pa.types.is_timestamp(column.type):
        milliseconds = column.cast(pa.timestamp("ms", tz=column.type.tz)).cast(pa.int64())
        return pc.fill_null(milliseconds, 0).to_numpy().astype(np.int64)
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        values = pc.fill_null(column.cast(pa.float64()), 0).to_numpy()
        # Epoch seconds are below 1e11 until the year 5138; larger values are milliseconds.
        return np.where(values < 1e11, values * 1000, values).astype(np.int64)
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return _iso_times(_text(column), name, locate)
    raise MicrosegError(f"{locate.where}: {name} must be a timestamp, got {column.type}")


def _iso_times(text: pa.ChunkedArray, name: str, locate: _Locator) -> np.ndarray:
    """ISO 8601 text (UTC when no zone is given) -> ms. Arrow parses text with a zone at
    once; anything else is parsed once per distinct text."""
    try:
        parsed = pc.cast(text, pa.timestamp("ms", tz="UTC")).cast(pa.int64())
        return parsed.to_numpy(zero_copy_only=False).astype(np.int64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values, indices = _distinct(text)
    moments = []
    for position, value in enumerate(values):
        if value == "":
            moments.append(0)
            continue
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            locate.fail_row(
                int(np.flatnonzero(indices == position)[0]),
                f"{name} {value!r} is not an ISO 8601 time",
            )
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moments.append(int(moment.timestamp() * 1000))
    return np.array(moments, dtype=np.int64)[indices] if len(indices) else np.zeros(0, np.int64)
