"""Templates: which information elements a data record carries, as a numpy dtype.

A template's dtype names only the elements microseg uses (by offset) and has the record's
full length as itemsize, so unknown and enterprise elements are skipped by length for free
(RFC 7011 3.4.1, 3.2: enterprise bit + Private Enterprise Number).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np

VARIABLE_LENGTH = 65535  # RFC 7011 7: a field length of 65535 means variable length
REVERSE_PEN = 29305  # RFC 5103 6.1: reverse information elements

# (enterprise, element id) -> role; RFC 7011 / IANA IPFIX registry numbers, which NetFlow v9
# (RFC 3954 8) shares for these fields.
ROLES: dict[tuple[int, int], str] = {
    (0, 8): "src_v4",  # sourceIPv4Address
    (0, 12): "dst_v4",  # destinationIPv4Address
    (0, 27): "src_v6",  # sourceIPv6Address
    (0, 28): "dst_v6",  # destinationIPv6Address
    (0, 7): "src_port",  # sourceTransportPort
    (0, 11): "dst_port",  # destinationTransportPort
    (0, 4): "protocol",  # protocolIdentifier
    (0, 2): "packets",  # packetDeltaCount
    (0, 86): "packets",  # packetTotalCount
    (0, 1): "bytes",  # octetDeltaCount
    (0, 85): "bytes",  # octetTotalCount
    (0, 6): "tcp_flags",  # tcpControlBits
    (0, 32): "icmp_type_code",  # icmpTypeCodeIPv4
    (0, 139): "icmp_type_code",  # icmpTypeCodeIPv6
    (0, 61): "direction",  # flowDirection
    (0, 234): "vrf_id",  # ingressVRFID
    (0, 150): "start_s",  # flowStartSeconds
    (0, 151): "end_s",  # flowEndSeconds
    (0, 152): "start_ms",  # flowStartMilliseconds
    (0, 153): "end_ms",  # flowEndMilliseconds
    (0, 154): "start_ntp",  # flowStartMicroseconds (NTP format, RFC 7011 6.1.9)
    (0, 155): "end_ntp",  # flowEndMicroseconds
    (0, 156): "start_ntp",  # flowStartNanoseconds (NTP format, RFC 7011 6.1.10)
    (0, 157): "end_ntp",  # flowEndNanoseconds
    (0, 22): "start_uptime",  # flowStartSysUpTime / NFv9 FIRST_SWITCHED
    (0, 21): "end_uptime",  # flowEndSysUpTime / NFv9 LAST_SWITCHED
    (0, 160): "system_init_ms",  # systemInitTimeMilliseconds (options data, RFC 7011 / IANA)
    (REVERSE_PEN, 2): "rev_packets",
    (REVERSE_PEN, 86): "rev_packets",
    (REVERSE_PEN, 1): "rev_bytes",
    (REVERSE_PEN, 85): "rev_bytes",
    (REVERSE_PEN, 6): "rev_tcp_flags",
}
ADDRESS_LENGTH = {"src_v4": 4, "dst_v4": 4, "src_v6": 16, "dst_v6": 16}


@dataclass(frozen=True)
class FieldSpec:
    element_id: int
    length: int
    enterprise: int = 0


@dataclass(eq=False)
class Template:
    """One (options) template of one stream (exporter address, port, version, domain)."""

    template_id: int
    fields: tuple[FieldSpec, ...]
    scope_count: int = 0  # > 0: an options template (RFC 7011 3.4.2.2)
    record_length: int = 0  # 0 when any field is variable-length
    dtype: np.dtype | None = None
    roles: dict[str, int] = field(default_factory=dict)  # role -> offset (index if variable)

    @property
    def is_options(self) -> bool:
        return self.scope_count > 0

    @property
    def variable_length(self) -> bool:
        return self.record_length == 0


def build_template(template_id: int, fields: tuple[FieldSpec, ...], scope_count: int = 0):
    """A Template with its dtype; elements we do not use stay out of the dtype."""
    record_length, dtype, roles = _layout(fields)
    return Template(template_id, fields, scope_count, record_length, dtype, dict(roles))


@functools.lru_cache(maxsize=1024)
def _layout(fields: tuple[FieldSpec, ...]):
    """(record length, dtype, roles) of a field list; exporters resend the same few layouts."""
    roles: dict[str, int] = {}
    if any(f.length == VARIABLE_LENGTH for f in fields):
        # record layouts vary: roles name the field *index*, offsets are found per record
        for index, spec in enumerate(fields):
            role = ROLES.get((spec.enterprise, spec.element_id))
            if role and role not in roles and fits(role, spec.length):
                roles[role] = index
        return 0, None, tuple(roles.items())
    names, formats, offsets = [], [], []
    offset = 0
    for spec in fields:
        role = ROLES.get((spec.enterprise, spec.element_id))
        if role and role not in roles and fits(role, spec.length):
            roles[role] = offset
            for name, fmt, at in field_columns(role, spec.length, offset):
                names.append(name)
                formats.append(fmt)
                offsets.append(at)
        offset += spec.length
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": offset})
    return offset, dtype, tuple(roles.items())


def fits(role: str, length: int) -> bool:
    wanted = ADDRESS_LENGTH.get(role)
    if wanted is not None:
        return length == wanted
    if role.endswith("_ntp"):
        return length == 8
    return 1 <= length <= 8


def field_columns(role: str, length: int, offset: int):
    if length == 16:
        return [(role + "_hi", ">u8", offset), (role + "_lo", ">u8", offset + 8)]
    if length in (1, 2, 4, 8):
        return [(role, f">u{length}", offset)]
    # RFC 7011 6.2 reduced-size encoding with an odd length: raw bytes, widened later
    return [(role, f"V{length}", offset)]


def widen(values: np.ndarray) -> np.ndarray:
    """An unsigned column as uint64, including odd-sized (reduced-size) big-endian fields."""
    if values.dtype.kind == "V":
        raw = np.frombuffer(values.tobytes(), np.uint8).reshape(len(values), values.dtype.itemsize)
        weights = np.uint64(256) ** np.arange(raw.shape[1] - 1, -1, -1, dtype=np.uint64)
        return raw.astype(np.uint64) @ weights
    return values.astype(np.uint64)
