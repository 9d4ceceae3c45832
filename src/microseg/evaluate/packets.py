"""Packets as columns: the evaluator's input, IPv4 and IPv6 side by side.

Addresses are held as 16 big-endian bytes (`S16`), IPv4 in the last four, so one column holds
both families and sorts numerically within a family; `family` tells them apart.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from microseg.model import MicrosegError
from microseg.model.ports import (
    EPHEMERAL_PORT_START,
    ICMP,
    ICMP_REPLY_TYPES,
    ICMP_TYPE_NAMES_BY_PROTOCOL,
    ICMPV6,
    PORT_NAMES,
    PORT_PROTOCOLS,
    PROTOCOL_NUMBERS,
)

NO_ICMP_TYPE = 256  # the icmp_type of a packet that is not ICMP
ADDRESS_DTYPE = np.dtype("S16")


@dataclass(frozen=True)
class PacketBatch:
    """N packets, one numpy array per header field.

    Example: PacketBatch.from_fields(vrf=["default"], protocol=[6], src=["10.0.0.1"],
    dst=["10.0.0.2"], sport=[49152], dport=[22])
    """

    vrf: np.ndarray  # str (numpy unicode)
    family: np.ndarray  # uint8: 4 or 6
    protocol: np.ndarray  # int16: IP protocol number
    src: np.ndarray  # S16
    dst: np.ndarray  # S16
    sport: np.ndarray  # int32; 0 when the protocol has no ports
    dport: np.ndarray  # int32
    icmp_type: np.ndarray  # int16; NO_ICMP_TYPE when not ICMP

    def __len__(self) -> int:
        return len(self.protocol)

    @classmethod
    def from_fields(
        cls,
        *,
        vrf: Sequence[str] | np.ndarray | str,
        protocol: Sequence[int | str] | np.ndarray,
        src: Sequence[str] | np.ndarray,
        dst: Sequence[str] | np.ndarray,
        sport: Sequence[int] | np.ndarray | None = None,
        dport: Sequence[int] | np.ndarray | None = None,
        icmp_type: Sequence[int] | np.ndarray | None = None,
    ) -> PacketBatch:
        """Build a batch from address strings; each distinct address is parsed once."""
        src_family, src_bytes = parse_addresses(src)
        dst_family, dst_bytes = parse_addresses(dst)
        mixed = np.flatnonzero(src_family != dst_family)
        if len(mixed):
            raise MicrosegError(
                f"packet {mixed[0]}: source and destination are of different address families"
            )
        count = len(src_family)
        protocols = protocol_numbers(protocol)
        vrf_column = np.full(count, vrf) if isinstance(vrf, str) else np.asarray(vrf, dtype=str)
        zeros = np.zeros(count, dtype=np.int32)
        ports_apply = np.isin(protocols, PORT_PROTOCOLS)
        sport_column = np.where(ports_apply, _int_column(sport, count, 0), 0).astype(np.int32)
        dport_column = np.where(ports_apply, _int_column(dport, count, 0), 0).astype(np.int32)
        for name, column in (("source", sport_column), ("destination", dport_column)):
            bad = np.flatnonzero((column < 0) | (column > 65535))
            if len(bad):
                raise MicrosegError(f"packet {bad[0]}: {name} port {column[bad[0]]} is not 0-65535")
        is_icmp = ((protocols == ICMP) & (src_family == 4)) | (
            (protocols == ICMPV6) & (src_family == 6)
        )
        types = _int_column(icmp_type, count, 0)
        icmp_column = np.where(is_icmp, types, NO_ICMP_TYPE).astype(np.int16)
        return cls(
            vrf=vrf_column,
            family=src_family,
            protocol=protocols,
            src=src_bytes,
            dst=dst_bytes,
            sport=sport_column if len(sport_column) else zeros,
            dport=dport_column if len(dport_column) else zeros,
            icmp_type=icmp_column,
        )

    def take(self, index: np.ndarray) -> PacketBatch:
        return PacketBatch(**{name: getattr(self, name)[index] for name in _COLUMNS})


_COLUMNS = ("vrf", "family", "protocol", "src", "dst", "sport", "dport", "icmp_type")


def _int_column(values, count: int, default: int) -> np.ndarray:
    if values is None:
        return np.full(count, default, dtype=np.int64)
    column = np.asarray(values, dtype=np.int64)
    if column.shape != (count,):
        raise MicrosegError(f"expected {count} values, got {column.shape[0]}")
    return column


def protocol_numbers(values: Sequence[int | str] | np.ndarray) -> np.ndarray:
    """Protocol names (`tcp`, `udp`, `icmp`, `icmpv6`) or numbers as an int16 column."""
    column = np.asarray(values)
    if column.dtype.kind in "iu":
        numbers = column.astype(np.int16)
    else:
        unique, inverse = np.unique(column.astype(str), return_inverse=True)
        numbers = np.array([protocol_number(name) for name in unique], dtype=np.int16)[inverse]
    bad = np.flatnonzero((numbers < 0) | (numbers > 255))
    if len(bad):
        raise MicrosegError(f"protocol {numbers[bad[0]]} is not an IP protocol number 0-255")
    return numbers


def protocol_number(name: str | int) -> int:
    text = str(name).strip().lower()
    if text.isascii() and text.isdigit() and len(text) <= 3 and int(text) <= 255:
        return int(text)
    if text in PROTOCOL_NUMBERS:
        return PROTOCOL_NUMBERS[text]
    raise MicrosegError(
        f"unknown protocol {str(name)!r} (tcp, udp, icmp, icmpv6 or a number 0-255)"
    )


def icmp_type_number(name: str | int, protocol: str) -> int:
    text = str(name).strip().lower()
    if text.isascii() and text.isdigit() and len(text) <= 3 and int(text) <= 255:
        return int(text)
    names = ICMP_TYPE_NAMES_BY_PROTOCOL.get(protocol, {})
    if text in names:
        return names[text]
    raise MicrosegError(f"unknown {protocol} type {name!r} (known: {', '.join(sorted(names))})")


def port_number(port: int | str, protocol: str) -> int:
    """A server port given as a number or, as in a policy's services, an EOS port keyword
    (`ssh`, `www`, `domain`: model/ports.py)."""
    text = str(port).strip().lower()
    if text.isascii() and text.isdigit():
        if len(text) > 5 or int(text) > 65535:
            raise MicrosegError(f"--port {str(port)[:20]} is not 0-65535")
        return int(text)
    names = PORT_NAMES.get(protocol, {})
    if text in names:
        return names[text]
    known = f" or a {protocol} port name ({', '.join(sorted(names))})" if names else ""
    raise MicrosegError(f"--port {str(port)[:20]!r}: not a number 0-65535{known}")


def address_bytes(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    return address.packed.rjust(16, b"\0")


def parse_addresses(values: Sequence[str] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Address strings as (family uint8, S16 bytes); each distinct string is parsed once."""
    column = np.asarray(values, dtype=str)
    unique, inverse = np.unique(column, return_inverse=True)
    families = np.empty(len(unique), dtype=np.uint8)
    packed = np.empty(len(unique), dtype=ADDRESS_DTYPE)
    for position, text in enumerate(unique):
        try:
            address = ipaddress.ip_address(text.strip())
        except ValueError:
            raise MicrosegError(f"{text!r} is not an IPv4 or IPv6 address") from None
        families[position] = address.version
        packed[position] = address_bytes(address)
    return families[inverse.reshape(-1)], packed[inverse.reshape(-1)]


def icmp_reply_types(
    protocol: np.ndarray, query_type: np.ndarray, unanswered: int | np.ndarray
) -> np.ndarray:
    """The ICMP type answering each query (echo 8 -> 0, ...; `model.ports.ICMP_REPLY_TYPES`);
    `unanswered` where the type is no query of that protocol."""
    reply_type = np.broadcast_to(np.asarray(unanswered), np.shape(query_type)).copy()
    for number, replies in ICMP_REPLY_TYPES.items():
        for query, answer in replies.items():
            reply_type[(protocol == number) & (query_type == query)] = answer
    return reply_type


def packed_addresses(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """16-byte big-endian addresses (ADDRESS_DTYPE) from their upper and lower 64 bits."""
    words = np.empty((len(high), 2), dtype=">u8")
    words[:, 0] = high
    words[:, 1] = low
    return words.view(ADDRESS_DTYPE).reshape(-1)


def ephemeral_ports(*keys: np.ndarray) -> np.ndarray:
    """The port from 49152 up (RFC 6335's dynamic range) a summarised (`eph`) client port
    replays as, one per row, from the row's own content (`keys`: whole-number columns, e.g.
    protocol, the two addresses' words and the server port): a session replays the same
    port wherever it is in the table, however many rows were folded around it. The ports
    spread over the range like the clients' own (a splitmix64 hash of the keys)."""
    mixed = np.full(len(keys[0]), 0x9E3779B97F4A7C15, dtype=np.uint64)
    for key in keys:
        mixed = _mix(mixed ^ np.asarray(key).astype(np.int64).view(np.uint64))
    span = np.uint64(65536 - EPHEMERAL_PORT_START)
    return (EPHEMERAL_PORT_START + (mixed % span).astype(np.int64)).astype(np.int32)


def _mix(value: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser (Steele, Lea and Flood, 2014): every input bit moves every
    output bit; uint64 arithmetic wraps, as the algorithm needs."""
    value = (value ^ (value >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    value = (value ^ (value >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return value ^ (value >> np.uint64(31))
