"""The lab's mirror path, wire formats: NFLOG netlink messages in, GRE (RFC 2784/2890) out
and back. The live path (nftables -> NFLOG -> GRE -> softflowd -> collector) is run by
tests/lab/test_lab.py."""

from __future__ import annotations

import socket
import struct

from microseg.lab.mirror import (
    NFNL_SUBSYS_ULOG,
    NFULA_PAYLOAD,
    NFULNL_MSG_PACKET,
    gre_decapsulate,
    gre_encapsulate,
    logged_packets,
)

INNER = bytes.fromhex("4500001c00010000401100000a6401070ac8060a") + bytes(8)  # IPv4/UDP


def _outer(gre: bytes) -> bytes:
    """An IPv4 header (protocol 47, 10.255.1.10 -> 10.255.1.11) in front of `gre`."""
    return (
        struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(gre), 1, 0, 64, 47, 0)
        + socket.inet_aton("10.255.1.10")
        + socket.inet_aton("10.255.1.11")
        + gre
    )


def test_gre_carries_the_packet_with_its_protocol_type():
    assert gre_encapsulate(socket.AF_INET, INNER)[:4] == b"\x00\x00\x08\x00"
    assert gre_encapsulate(socket.AF_INET6, INNER)[:4] == b"\x00\x00\x86\xdd"
    assert gre_decapsulate(_outer(gre_encapsulate(socket.AF_INET, INNER))) == INNER


def test_gre_optional_fields_are_skipped():
    # RFC 2890: key (K, 0x2000) and sequence number (S, 0x1000); RFC 2784: checksum (C).
    header = struct.pack("!HH", 0x8000 | 0x2000 | 0x1000, 0x0800) + bytes(12)
    assert gre_decapsulate(_outer(header + INNER)) == INNER


def test_gre_that_is_not_version_0_ip_is_ignored():
    assert gre_decapsulate(_outer(struct.pack("!HH", 0x0001, 0x0800) + INNER)) is None
    assert gre_decapsulate(_outer(struct.pack("!HH", 0, 0x88BE) + INNER)) is None  # ERSPAN
    assert gre_decapsulate(_outer(b"\x00\x00")) is None
    assert gre_decapsulate(b"\x45") is None


def _nflog_message(group: int, family: int, payload: bytes) -> bytes:
    """One NFULNL_MSG_PACKET as nfnetlink_log sends it (include/uapi/linux/netfilter/
    nfnetlink_log.h): nlmsghdr, nfgenmsg (family, version, group big-endian), attributes."""
    prefix = struct.pack("=HH", 4 + 5, 10) + b"drop\0" + bytes(3)  # NFULA_PREFIX, padded
    data = struct.pack("=HH", 4 + len(payload), NFULA_PAYLOAD) + payload
    data += bytes(-len(data) % 4)
    body = struct.pack("=BB", family, 0) + struct.pack("!H", group) + prefix + data
    kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_nflog_packets_are_read_with_their_group_and_family():
    datagram = _nflog_message(1, socket.AF_INET, INNER) + _nflog_message(3, 10, INNER[:21])
    assert list(logged_packets(datagram)) == [
        (1, socket.AF_INET, INNER),
        (3, 10, INNER[:21]),
    ]


def test_nflog_messages_of_other_kinds_or_without_payload_are_skipped():
    no_payload = _nflog_message(1, socket.AF_INET, b"")
    error = struct.pack("=IHHII", 20, 2, 0, 0, 0) + struct.pack("=i", 0)
    assert list(logged_packets(error + no_payload)) == []
