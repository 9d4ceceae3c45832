"""The lab's mirror path from the switch to the monitor node (the seed's vZTX).

The nftables target renders a monitored match as `log group N` (see
`microseg.targets.nftables.render`): the kernel hands every packet the match decides to NFLOG
group N. Two small processes carry them on, because this path has no kernel GRE device
(`ip_gre` is often missing from container and VM kernels):

* `encap`, in the switch namespace, listens on the NFLOG groups (nfnetlink_log, netlink
  family NETLINK_NETFILTER) and sends each packet GRE-encapsulated (RFC 2784: a four-byte
  header, protocol type 0x0800 or 0x86DD, no key, no checksum) from the switch's Loopback0 to
  the monitor node's, over the p2p link Vlan1111 -- real GRE packets on a real link;
* `decap`, in the monitor namespace, receives GRE from the switch (a raw IP protocol 47
  socket), strips it and streams the inner packets as a pcap stream (LINKTYPE_RAW) into
  softflowd, which exports IPFIX to `microseg collect`. softflowd reads the stream, not an
  interface: softflowd 1.1.0 does not set libpcap's immediate mode, so a live capture on a
  quiet interface processes nothing until a 256 KiB block fills (irino/softflowd#71).
  SIGUSR1 makes decap take what is still arriving (until the tunnel is quiet for half a
  second), then close the stream: softflowd exports every flow it holds, exits, and a new
  one takes over; decap then writes the number of flushes to its `--flushed` file.

`python -m microseg.lab.mirror encap --source A --group N=DST ...` and
`python -m microseg.lab.mirror decap --peer A --collector HOST:PORT --flushed FILE`.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NFULA_CFG_CMD = 1
NFULA_CFG_MODE = 2
NFULA_CFG_QTHRESH = 5
NFULNL_CFG_CMD_BIND = 1
NFULNL_COPY_PACKET = 2
NFULA_PAYLOAD = 9
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLA_TYPE_MASK = 0x3FFF
COPY_RANGE = 0xFFFF
IPPROTO_GRE = 47
GRE_PROTOCOL: dict[int, int] = {socket.AF_INET: 0x0800, socket.AF_INET6: 0x86DD}
LINKTYPE_RAW = 101  # pcap: the packet starts with its IPv4 or IPv6 header
PCAP_SNAPLEN = 65535
QUIET_S = 0.5  # a flush waits for the tunnel to be this long without a packet


def _attribute(kind: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + bytes(-length % 4)


def _config_message(group: int, attributes: bytes, sequence: int) -> bytes:
    body = struct.pack("=BB", socket.AF_UNSPEC, 0) + struct.pack("!H", group) + attributes
    kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
    return (
        struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK, sequence, 0) + body
    )


def messages(data: bytes):
    """(type, payload) of every netlink message in one datagram."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind, _flags, _sequence, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16:
            return
        yield kind, data[offset + 16 : offset + length]
        offset += (length + 3) & ~3


def attributes(data: bytes) -> dict[int, bytes]:
    found = {}
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        found[kind & NLA_TYPE_MASK] = data[offset + 4 : offset + length]
        offset += (length + 3) & ~3
    return found


def bind_nflog(groups: list[int]) -> socket.socket:
    """A netlink socket receiving whole packets of NFLOG `groups` (nfnetlink_log)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    for sequence, group in enumerate(groups, 1):
        command = _attribute(NFULA_CFG_CMD, struct.pack("=B", NFULNL_CFG_CMD_BIND))
        mode = _attribute(NFULA_CFG_MODE, struct.pack("!IBB", COPY_RANGE, NFULNL_COPY_PACKET, 0))
        # One packet a message, sent at once: by default nfnetlink_log batches up to 100
        # packets or one second (NFULNL_QTHRESH_DEFAULT, NFULNL_TIMEOUT_DEFAULT).
        threshold = _attribute(NFULA_CFG_QTHRESH, struct.pack("!I", 1))
        for attribute in (command, mode, threshold):
            sock.send(_config_message(group, attribute, sequence))
            for kind, payload in messages(sock.recv(65536)):
                error = struct.unpack_from("=i", payload)[0] if kind == NLMSG_ERROR else 0
                if error:
                    raise OSError(-error, f"NFLOG group {group}: {os.strerror(-error)}")
    return sock


def logged_packets(data: bytes):
    """(group, address family, packet) of every NFLOG packet message in `data`."""
    packet_kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
    for kind, payload in messages(data):
        if kind != packet_kind or len(payload) < 4:
            continue
        family = payload[0]
        group = struct.unpack_from("!H", payload, 2)[0]
        packet = attributes(payload[4:]).get(NFULA_PAYLOAD)
        if packet:
            yield group, family, packet


def gre_encapsulate(family: int, packet: bytes) -> bytes:
    """RFC 2784 GRE header (no checksum, version 0) + the packet."""
    return struct.pack("!HH", 0, GRE_PROTOCOL[family]) + packet


def gre_decapsulate(datagram: bytes) -> bytes | None:
    """The inner IPv4/IPv6 packet of a raw IPv4 datagram carrying GRE, or None.

    RFC 2890's key and sequence fields and RFC 2784's checksum are skipped when present;
    versions other than 0 and other payload protocols are ignored."""
    if len(datagram) < 20:
        return None
    header = (datagram[0] & 0x0F) * 4
    gre = datagram[header:]
    if len(gre) < 4:
        return None
    flags, protocol = struct.unpack_from("!HH", gre)
    if flags & 0x0007 or protocol not in GRE_PROTOCOL.values():
        return None
    offset = 4 + 4 * sum(bool(flags & bit) for bit in (0x8000, 0x2000, 0x1000))
    inner = gre[offset:]
    return inner or None


def encap(source: str, destinations: dict[int, str]) -> None:
    """NFLOG groups -> GRE to each group's monitor node, until SIGTERM."""
    nflog = bind_nflog(sorted(destinations))
    gre = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_GRE)
    gre.bind((source, 0))
    print("ready", flush=True)
    while True:
        data = nflog.recv(1 << 20)
        for group, family, packet in logged_packets(data):
            if group in destinations and family in GRE_PROTOCOL:
                gre.sendto(gre_encapsulate(family, packet), (destinations[group], 0))


class FlowExporter:
    """softflowd reading a pcap stream on its standard input, exporting IPFIX (RFC 7011)."""

    def __init__(self, collector: str) -> None:
        self.collector = collector
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # -r -: a pcap stream on stdin (softflowd then runs in the foreground, holds every
        # flow until the stream ends or its table is full, and has no control socket: a `-c`
        # after `-r` would open one that softflowd 1.1.0 then blocks on in accept());
        # -a: flow times from the packets' own timestamps; -A milli: absolute times in ms.
        self.process = subprocess.Popen(
            ["softflowd", "-r", "-", "-v", "10", "-a", "-A", "milli", "-n", self.collector],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert self.process.stdin is not None
        self._write(self.process.stdin, struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0,
                                                    PCAP_SNAPLEN, LINKTYPE_RAW))  # fmt: skip

    def packet(self, packet: bytes, now: float) -> None:
        if self.process is None or self.process.stdin is None:
            return
        record = struct.pack("=IIII", int(now), int(now % 1 * 1e6), len(packet), len(packet))
        self._write(self.process.stdin, record + packet)

    def stop(self) -> None:
        """End the stream: softflowd exports every flow it holds and exits."""
        if self.process is None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait()
        self.process = None

    @staticmethod
    def _write(stream: IO[bytes], data: bytes) -> None:
        with contextlib.suppress(BrokenPipeError):  # softflowd ended: stop() will see it
            stream.write(data)
            stream.flush()


def decap(peers: set[str], collector: str, flushed: Path) -> None:
    """GRE from `peers` -> softflowd, until SIGTERM; SIGUSR1 exports every flow now."""
    exporter = FlowExporter(collector)
    gre = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_GRE)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    requests: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        requests.append(signum)
        with contextlib.suppress(BlockingIOError):
            os.write(wake_write, b"!")

    signal.signal(signal.SIGUSR1, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    exporter.start()
    flushes = 0
    flushed.write_text("0\n")
    print("ready", flush=True)
    while True:
        readable, _, _ = select.select([gre.fileno(), wake_read], [], [])
        if gre.fileno() in readable:
            _receive(gre, peers, exporter)
        if wake_read in readable:
            os.read(wake_read, 64)
        while requests:
            signum = requests.pop(0)
            _drain(gre, peers, exporter)
            exporter.stop()
            if signum == signal.SIGTERM:
                return
            exporter.start()
            flushes += 1
            temporary = flushed.with_suffix(".tmp")
            temporary.write_text(f"{flushes}\n")
            os.replace(temporary, flushed)


def _drain(gre: socket.socket, peers: set[str], exporter: FlowExporter) -> None:
    """Before a flush, take what is still on its way: GRE datagrams until none has come
    for QUIET_S (the switch's mirror process may still be sending the last packets)."""
    while select.select([gre.fileno()], [], [], QUIET_S)[0]:
        _receive(gre, peers, exporter)


def _receive(gre: socket.socket, peers: set[str], exporter: FlowExporter) -> None:
    """One GRE datagram: its inner packet to softflowd when it comes from a known peer."""
    datagram, peer = gre.recvfrom(65535)
    inner = gre_decapsulate(datagram) if peer[0] in peers else None
    if inner is not None:
        exporter.packet(inner, time.time())


def _group(text: str) -> tuple[int, str]:
    group, _, destination = text.partition("=")
    return int(group), str(ipaddress.ip_address(destination))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m microseg.lab.mirror")
    commands = parser.add_subparsers(dest="command", required=True)
    encap_parser = commands.add_parser("encap")
    encap_parser.add_argument("--source", required=True)
    encap_parser.add_argument("--group", action="append", type=_group, default=[])
    decap_parser = commands.add_parser("decap")
    decap_parser.add_argument("--peer", action="append", required=True)
    decap_parser.add_argument("--collector", required=True)
    decap_parser.add_argument("--flushed", type=Path, required=True)
    arguments = parser.parse_args(argv)
    if arguments.command == "encap":
        encap(arguments.source, dict(arguments.group))
    else:
        decap(set(arguments.peer), arguments.collector, arguments.flushed)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
