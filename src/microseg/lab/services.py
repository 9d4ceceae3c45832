"""The lab hosts' services and probes, run inside the lab's namespaces.

`python -m microseg.lab.services serve` listens on every service the seed uses and answers
with the real protocol: DNS on udp/53 (an A record for every name; RFC 1035 4.1), NTP on
udp/123 (a server-mode reply; RFC 5905 7.3), HTTP/1.0 on tcp/80, the app on tcp/4567 (a
line), and SSH on tcp/22 as a TCP service sending an SSH identification string (RFC 4253
4.2; no key exchange: the lab tests reachability, not logins).

`python -m microseg.lab.services probe tcp|udp|icmp DST PORT` prints `connects` or
`blocked`: a TCP handshake and the service's greeting, a DNS/NTP query answered, or an ICMP
echo answered.
`python -m microseg.lab.services burst '[["tcp", DST, PORT], ...]'` runs several probes at
once (one thread each) and prints their results as a JSON list, in order.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import struct
import sys
import threading
import time

TCP_PORTS = (22, 80, 4567)
UDP_PORTS = (53, 123)
# A policy that drops a packet gives no answer, so `blocked` is a timeout. The timeouts are
# long enough that a loaded machine (the service's process off the CPU for seconds) does not
# pass for a policy drop:
TIMEOUT_S = 1.5  # the handshake; Linux resends a SYN after 1 s (RFC 6298 2.1, initial RTO)
GREETING_TIMEOUT_S = 10.0  # after a handshake the policy let through, the service's first line
UDP_TRIES = 2  # a query resent after TIMEOUT_S without an answer, as dig does (+tries)
ANSWER_ADDRESS = "10.100.99.51"  # every name resolves to web01
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900 (NTP era 0) to 1970
IP_PKTINFO = 8  # Linux include/uapi/linux/in.h (Python's socket module has it from 3.12)


def dns_query(name: str, identifier: int) -> bytes:
    """A recursive A query for `name` (RFC 1035 4.1.1 header, 4.1.2 question)."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return (
        struct.pack("!HHHHHH", identifier, 0x0100, 1, 0, 0, 0) + labels + struct.pack("!HH", 1, 1)
    )


def dns_answer(query: bytes) -> bytes | None:
    """The answer to a standard query: one A record pointing at ANSWER_ADDRESS; None for
    anything that is not a query with one question."""
    if len(query) < 12:
        return None
    identifier, flags, questions = struct.unpack_from("!HHH", query)
    if flags & 0x8000 or questions != 1:
        return None
    end = 12
    while end < len(query) and query[end]:
        end += query[end] + 1
    question = query[12 : end + 5]
    if len(question) != end + 5 - 12:
        return None
    header = struct.pack("!HHHHHH", identifier, 0x8180 | (flags & 0x0100), 1, 1, 0, 0)
    record = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(ANSWER_ADDRESS)
    return header + question + record


def ntp_request() -> bytes:
    """A client-mode (3) NTPv4 packet (RFC 5905 7.3)."""
    return bytes([0x23]) + bytes(47)


def ntp_answer(request: bytes, now: float) -> bytes | None:
    """A server-mode (4), stratum 1 reply to a client-mode request."""
    if len(request) < 48 or request[0] & 0x07 != 3:
        return None
    seconds = int(now) + NTP_EPOCH_OFFSET
    fraction = int((now % 1) * 2**32)
    stamp = struct.pack("!II", seconds, fraction)
    header = bytes([(request[0] & 0x38) | 0x04, 1, request[2], 0xEC]) + bytes(8) + b"LOCL"
    return header + stamp + request[40:48] + stamp + stamp


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
        # Learn each query's destination address, to answer from it (below).
        datagram.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        datagram.bind(("0.0.0.0", port))
        listeners.append(datagram)
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select(listeners, [], [])
        for sock in readable:
            port = sock.getsockname()[1]
            if sock.type == socket.SOCK_STREAM:
                connection, _ = sock.accept()
                with contextlib.suppress(OSError):
                    connection.sendall(_greeting(port))
                connection.close()
                continue
            data, ancillary, _flags, peer = sock.recvmsg(2048, socket.CMSG_SPACE(12))
            reply = dns_answer(data) if port == 53 else ntp_answer(data, time.time())
            if reply is not None:
                sock.sendmsg([reply], _reply_from(ancillary), 0, peer)


def _reply_from(ancillary: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
    """Answer from the address the query was sent to, as a DNS or NTP server must (a host
    with several addresses would otherwise answer from its primary one, and the client,
    which checks the source, would drop it): `struct in_pktinfo` with ipi_spec_dst set
    (ip(7) IP_PKTINFO)."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            destination = data[8:12]  # ipi_addr: the header's destination address
            return [(level, kind, struct.pack("=I4s4s", 0, destination, bytes(4)))]
    return []


def _greeting(port: int) -> bytes:
    if port == 22:
        return b"SSH-2.0-microseg_lab\r\n"
    if port == 80:
        body = b"microseg lab web server\n"
        return b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    return b"microseg lab app\n"


def internet_checksum(data: bytes) -> int:
    """The 16-bit one's complement of the one's complement sum (RFC 1071), as IPv4, ICMP,
    TCP and UDP headers carry it."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ping(destination: str) -> bool:
    """ICMP echo (type 8) answered by an echo-reply (type 0) from the destination."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    identifier = _identifier()
    header = struct.pack("!BBHHH", 8, 0, 0, identifier, 1) + b"microseg"
    packet = header[:2] + struct.pack("!H", internet_checksum(header)) + header[4:]
    raw.sendto(packet, (destination, 0))
    deadline = time.monotonic() + TIMEOUT_S
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


def probe(protocol: str, destination: str, port: int) -> bool:
    if protocol == "icmp":
        return _ping(destination)
    if protocol == "tcp":
        try:
            with socket.create_connection((destination, port), timeout=TIMEOUT_S) as stream:
                # The handshake is through, so the policy passes this connection both ways;
                # a late greeting is a busy service, not a drop.
                stream.settimeout(GREETING_TIMEOUT_S)
                return bool(stream.recv(64))
        except OSError:
            return False
    request = dns_query("web01.lab", _identifier()) if port == 53 else ntp_request()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram:
        datagram.settimeout(TIMEOUT_S)
        try:
            # Connected: replies from any other address are not taken (as dig or an NTP
            # client would ignore them).
            datagram.connect((destination, port))
        except OSError:
            return False
        for _ in range(UDP_TRIES):
            try:
                datagram.send(request)
                reply = datagram.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return False
            return reply[:2] == request[:2] if port == 53 else len(reply) >= 48
    return False


def _identifier() -> int:
    """An ICMP echo / DNS query id telling this process's threads apart."""
    return (os.getpid() * 31 + threading.get_ident()) & 0xFFFF


def burst(probes: list[tuple[str, str, int]]) -> list[bool]:
    """Every probe at once, one thread each; their results in order."""
    results = [False] * len(probes)

    def one(index: int, protocol: str, destination: str, port: int) -> None:
        results[index] = probe(protocol, destination, port)

    threads = [
        threading.Thread(target=one, args=(index, *item)) for index, item in enumerate(probes)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve()
        return 0
    if len(argv) == 4 and argv[0] == "probe":
        print("connects" if probe(argv[1], argv[2], int(argv[3])) else "blocked", flush=True)
        return 0
    if len(argv) == 2 and argv[0] == "burst":
        probes = [(str(p), str(d), int(n)) for p, d, n in json.loads(argv[1])]
        outcomes = ["connects" if ok else "blocked" for ok in burst(probes)]
        print(json.dumps(outcomes), flush=True)
        return 0
    print("usage: services serve | probe tcp|udp|icmp DST PORT | burst JSON", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
