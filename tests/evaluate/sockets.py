"""Real-socket client and server for the seed lab replay, run inside host namespaces.

`sockets.py serve` listens on TCP 22, 80, 4567 and echoes UDP 53 until killed.
`sockets.py connect tcp|udp|icmp DST PORT` prints `connects` or `blocked`: a TCP handshake,
a UDP request answered, or an ICMP echo answered by echo-reply, within the timeout.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time

TCP_PORTS = (22, 80, 4567)
UDP_PORTS = (53,)
TIMEOUT = 1.5


def serve() -> None:
    listeners = []
    for port in TCP_PORTS:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen(64)
        listeners.append(listener)
    for port in UDP_PORTS:
        datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        datagram.bind(("0.0.0.0", port))
        listeners.append(datagram)
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select(listeners, [], [])
        for sock in readable:
            if sock.type == socket.SOCK_STREAM:
                connection, _ = sock.accept()
                connection.close()
            else:
                data, peer = sock.recvfrom(2048)
                sock.sendto(data, peer)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ping(destination: str) -> bool:
    """ICMP echo (type 8) answered by an echo-reply (type 0) from the destination."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    identifier = os.getpid() & 0xFFFF
    header = struct.pack("!BBHHH", 8, 0, 0, identifier, 1) + b"microseg"
    packet = header[:2] + struct.pack("!H", _checksum(header)) + header[4:]
    raw.sendto(packet, (destination, 0))
    deadline = time.monotonic() + TIMEOUT
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([raw], [], [], remaining)
        if not ready:
            break
        data, peer = raw.recvfrom(2048)
        icmp = data[(data[0] & 0x0F) * 4 :]
        kind, _, _, reply_id, _ = struct.unpack_from("!BBHHH", icmp)
        if peer[0] == destination and kind == 0 and reply_id == identifier:
            return True
    return False


def connect(protocol: str, destination: str, port: int) -> bool:
    if protocol == "icmp":
        return _ping(destination)
    if protocol == "tcp":
        try:
            socket.create_connection((destination, port), timeout=TIMEOUT).close()
            return True
        except OSError:
            return False
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.settimeout(TIMEOUT)
    udp.sendto(b"microseg", (destination, port))
    try:
        return udp.recvfrom(2048)[0] == b"microseg"
    except OSError:
        return False


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        protocol, destination, port = sys.argv[2], sys.argv[3], int(sys.argv[4])
        print("connects" if connect(protocol, destination, port) else "blocked")
