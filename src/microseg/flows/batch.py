"""FlowBatch: decoded flow records as columns (numpy arrays), one row per flow record.

Addresses are two uint64 columns (high and low half of the 128-bit address); IPv4 is
stored IPv4-mapped (`::ffff:a.b.c.d`, RFC 4291 2.5.5.2) so one comparison orders both
families, and `family` says which one a row is.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc  # loaded with the module, not in a collector's first batch

IPV4_MAPPED = np.uint64(0xFFFF00000000)

# column name -> dtype; every FlowBatch has exactly these columns, all of one length.
COLUMNS: dict[str, np.dtype] = {
    "family": np.dtype(np.uint8),
    "src_hi": np.dtype(np.uint64),
    "src_lo": np.dtype(np.uint64),
    "dst_hi": np.dtype(np.uint64),
    "dst_lo": np.dtype(np.uint64),
    "src_port": np.dtype(np.uint16),
    "dst_port": np.dtype(np.uint16),
    "protocol": np.dtype(np.uint8),
    "icmp_type_code": np.dtype(np.uint16),
    "packets": np.dtype(np.uint64),
    "bytes": np.dtype(np.uint64),
    "rev_packets": np.dtype(np.uint64),
    "rev_bytes": np.dtype(np.uint64),
    "start_ms": np.dtype(np.int64),
    "end_ms": np.dtype(np.int64),
    "tcp_flags": np.dtype(np.uint16),
    "rev_tcp_flags": np.dtype(np.uint16),
    "direction": np.dtype(np.int8),
    "vrf_id": np.dtype(np.uint32),
    "exporter_hi": np.dtype(np.uint64),
    "exporter_lo": np.dtype(np.uint64),
    "observation_domain": np.dtype(np.uint32),
}


@dataclass
class FlowBatch:
    """Flow records as columns. `direction` is flowDirection (0 ingress, 1 egress, -1 unknown)."""

    family: np.ndarray
    src_hi: np.ndarray
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    src_port: np.ndarray
    dst_port: np.ndarray
    protocol: np.ndarray
    icmp_type_code: np.ndarray
    packets: np.ndarray
    bytes: np.ndarray
    rev_packets: np.ndarray
    rev_bytes: np.ndarray
    start_ms: np.ndarray
    end_ms: np.ndarray
    tcp_flags: np.ndarray
    rev_tcp_flags: np.ndarray
    direction: np.ndarray
    vrf_id: np.ndarray
    exporter_hi: np.ndarray
    exporter_lo: np.ndarray
    observation_domain: np.ndarray

    def __len__(self) -> int:
        return len(self.family)

    @classmethod
    def empty(cls, length: int = 0) -> FlowBatch:
        return cls(**{name: np.zeros(length, dtype) for name, dtype in COLUMNS.items()})

    @classmethod
    def concat(cls, batches: list[FlowBatch]) -> FlowBatch:
        batches = [batch for batch in batches if len(batch)]
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        return cls(
            **{name: np.concatenate([getattr(b, name) for b in batches]) for name in COLUMNS}
        )

    def take(self, index: np.ndarray) -> FlowBatch:
        return FlowBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to_records(self) -> list[dict]:
        """Rows as dicts with printable addresses (for tests and small outputs)."""
        src = format_addresses(self.src_hi, self.src_lo).to_pylist()
        dst = format_addresses(self.dst_hi, self.dst_lo).to_pylist()
        exporter = format_addresses(self.exporter_hi, self.exporter_lo).to_pylist()
        rows = []
        for i in range(len(self)):
            row = {name: getattr(self, name)[i].item() for name in COLUMNS}
            row.update(src=src[i], dst=dst[i], exporter=exporter[i])
            rows.append(row)
        return rows


def address_halves(address: str) -> tuple[int, int]:
    """(high, low) uint64 halves of an address; IPv4 is IPv4-mapped."""
    parsed = ipaddress.ip_address(address)
    value = int(parsed) | (0xFFFF00000000 if parsed.version == 4 else 0)
    return value >> 64, value & 0xFFFFFFFFFFFFFFFF


def format_addresses(high: np.ndarray, low: np.ndarray) -> pa.StringArray:
    """Address strings for (high, low) columns, as an Arrow array (no Python string per
    row: the session writer runs beside the receive loop, which needs the GIL); formats
    each distinct address once, IPv4 ones in Arrow."""
    if len(high) == 0:
        return pa.array([], pa.string())
    if not high.any():  # IPv4 only (the common case): one 64-bit sort is much faster
        distinct, inverse = np.unique(low, return_inverse=True)
        mapped = (distinct >> np.uint64(32)) == np.uint64(0xFFFF)
        names = _format_ipv4(distinct[mapped])
        if not mapped.all():
            others = pa.array([_format(0, value) for value in distinct[~mapped].tolist()])
            # back to the order of `distinct`: mapped ones first, then the others
            order = np.argsort(np.concatenate([np.flatnonzero(mapped), np.flatnonzero(~mapped)]))
            names = pa.concat_arrays([names, others]).take(pa.array(order))
        return names.take(pa.array(inverse.reshape(-1)))
    pairs = np.empty(len(high), dtype=[("hi", np.uint64), ("lo", np.uint64)])
    pairs["hi"], pairs["lo"] = high, low
    distinct, inverse = np.unique(pairs, return_inverse=True)
    names = pa.array([_format(int(h), int(lo)) for h, lo in distinct.tolist()], pa.string())
    return names.take(pa.array(inverse.reshape(-1)))


def _format_ipv4(values: np.ndarray) -> pa.StringArray:
    """Dotted quads of IPv4-mapped addresses, formatted in Arrow (no Python per address)."""
    if not len(values):
        return pa.array([], pa.string())
    octets = [
        pc.cast(pa.array((values >> np.uint64(shift)) & np.uint64(255)), pa.string())
        for shift in (24, 16, 8, 0)
    ]
    return pc.binary_join_element_wise(*octets, ".")


def _format(high: int, low: int) -> str:
    if high == 0 and (low >> 32) == 0xFFFF:
        return str(ipaddress.IPv4Address(low & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address((high << 64) | low))
