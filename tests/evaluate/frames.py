"""Ethernet frames for the kernel differential test, built by hand (the stdlib and the lab's
RFC 1071 checksum).

Each frame carries MAGIC + an 8-byte packet id in its payload, so the receiver in the
destination namespace can tell exactly which packets arrived. Also run as a script inside a
namespace: `frames.py send IFACE FILE` sends the frames in FILE (length-prefixed);
`frames.py receive IFACE OUT` appends the id of every arriving frame to OUT until SIGTERM.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
import struct
import sys
import time

from microseg.lab.services import internet_checksum

MAGIC = b"MSEGDIFF"
ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
SO_RCVBUFFORCE = 33


def _transport(protocol: int, sport: int, dport: int, icmp_type: int, payload: bytes) -> bytes:
    """The L4 header + payload with its checksum field zero (filled by the caller)."""
    if protocol == 6:  # TCP SYN, data offset 5
        return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0) + payload
    if protocol == 17:
        return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if protocol in (1, 58):  # echo-style header: type, code, checksum, id, sequence
        return struct.pack("!BBHHH", icmp_type, 0, 0, 0x4D53, 1) + payload
    return payload


_CHECKSUM_OFFSET = {6: 16, 17: 6, 1: 2, 58: 2}


def frame(
    packet_id: int,
    src: str,
    dst: str,
    protocol: int,
    sport: int,
    dport: int,
    icmp_type: int,
    src_mac: bytes,
    dst_mac: bytes,
    padding: int = 0,
) -> bytes:
    """An Ethernet frame whose payload is `padding` zero bytes, then MAGIC and the id.

    Varying the padding gives every packet its own size, so byte counters tell packets apart."""
    source, destination = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    payload = bytes(padding) + MAGIC + struct.pack("!Q", packet_id)
    segment = bytearray(_transport(protocol, sport, dport, icmp_type, payload))
    if source.version == 4:
        pseudo = source.packed + destination.packed + struct.pack("!BBH", 0, protocol, len(segment))
    else:
        pseudo = source.packed + destination.packed + struct.pack("!IxxxB", len(segment), protocol)
    if protocol in _CHECKSUM_OFFSET:
        covered = bytes(segment) if protocol == 1 else pseudo + bytes(segment)
        struct.pack_into("!H", segment, _CHECKSUM_OFFSET[protocol], internet_checksum(covered))
    if source.version == 4:
        header = bytearray(
            struct.pack(
                "!BBHHHBBH4s4s",
                0x45,
                0,
                20 + len(segment),
                packet_id & 0xFFFF,
                0,
                64,
                protocol,
                0,
                source.packed,
                destination.packed,
            )
        )
        struct.pack_into("!H", header, 10, internet_checksum(bytes(header)))
        return dst_mac + src_mac + struct.pack("!H", ETH_P_IP) + bytes(header) + bytes(segment)
    header = struct.pack(
        "!IHBB16s16s", 6 << 28, len(segment), protocol, 64, source.packed, destination.packed
    )
    return dst_mac + src_mac + struct.pack("!H", ETH_P_IPV6) + header + bytes(segment)


def write_frames(path: str, frames: list[bytes]) -> None:
    with open(path, "wb") as out:
        for item in frames:
            out.write(struct.pack("!H", len(item)) + item)


def _send(interface: str, path: str) -> None:
    with open(path, "rb") as source:
        data = source.read()
    sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sender.bind((interface, 0))
    position, sent = 0, 0
    while position < len(data):
        (length,) = struct.unpack_from("!H", data, position)
        sender.send(data[position + 2 : position + 2 + length])
        position += 2 + length
        sent += 1
        if sent % 64 == 0:
            time.sleep(0.001)  # let the veth backlogs drain between bursts


def sent_packet_id(data: bytes) -> int | None:
    """The id of a frame our sender built: MAGIC + id end it, and its source is not the
    switch (whose ICMP errors and IPv6 redirects quote our packets)."""
    if len(data) < 14 + 20 + 16 or data[-16:-8] != MAGIC:
        return None
    ethertype = struct.unpack_from("!H", data, 12)[0]
    if ethertype == ETH_P_IP:
        source = ipaddress.IPv4Address(data[26:30])
    elif ethertype == ETH_P_IPV6:
        source = ipaddress.IPv6Address(data[22:38])
    else:
        return None
    if source.is_link_local or int(source) & 0xFF in (0xFE,):
        return None
    return struct.unpack_from("!Q", data, len(data) - 8)[0]


def _receive(interface: str, out_path: str) -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    receiver = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    receiver.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
    receiver.bind((interface, 0))
    receiver.settimeout(0.05)
    with open(out_path, "a") as out:
        print("ready", flush=True)
        while not stop:
            try:
                data, address = receiver.recvfrom(65535)
            except (TimeoutError, InterruptedError):
                continue
            if address[2] == PACKET_OUTGOING:
                continue
            packet_id = sent_packet_id(data)
            if packet_id is not None:
                out.write(f"{packet_id}\n")
                out.flush()


if __name__ == "__main__":
    command, interface, path = sys.argv[1:4]
    _send(interface, path) if command == "send" else _receive(interface, path)
