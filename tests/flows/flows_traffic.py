"""The seed lab's traffic as a pcap (scapy), with the sessions it must produce.

Every conversation is built packet by packet and records what a correct session table
must show for it: who initiated, packets and IP bytes per direction, complete or half-open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

START_TIME = 1763578369.0  # 2025-11-19 18:52:49 UTC, the seed's first session


@dataclass
class ExpectedSession:
    protocol: str
    client: str
    client_port: int
    server: str
    server_port: int
    fwd_packets: int = 0
    fwd_bytes: int = 0
    rev_packets: int = 0
    rev_bytes: int = 0
    complete: bool = False
    half_open: bool = False


@dataclass
class LabTraffic:
    packets: list = field(default_factory=list)
    sessions: list[ExpectedSession] = field(default_factory=list)
    clock: float = START_TIME

    def send(self, session: ExpectedSession, packet, from_client: bool, delay=0.004) -> None:
        self.clock += delay
        frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / packet
        frame.time = self.clock  # the pcap record time; softflowd -a follows it
        self.packets.append(frame)
        size = len(packet)
        if from_client:
            session.fwd_packets += 1
            session.fwd_bytes += size
        else:
            session.rev_packets += 1
            session.rev_bytes += size

    def ip(self, src: str, dst: str):
        return IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)

    def tcp_conversation(self, client, cport, server, sport, request=b"", response=b""):
        session = ExpectedSession("tcp", client, cport, server, sport, complete=True)
        up, down = self.ip(client, server), self.ip(server, client)
        seq_c, seq_s = 1000, 5000
        self.send(session, up / TCP(sport=cport, dport=sport, flags="S", seq=seq_c), True)
        self.send(
            session,
            down / TCP(sport=sport, dport=cport, flags="SA", seq=seq_s, ack=seq_c + 1),
            False,
        )
        seq_c, seq_s = seq_c + 1, seq_s + 1
        self.send(
            session, up / TCP(sport=cport, dport=sport, flags="A", seq=seq_c, ack=seq_s), True
        )
        if request:
            tcp = TCP(sport=cport, dport=sport, flags="PA", seq=seq_c, ack=seq_s)
            self.send(session, up / tcp / Raw(request), True)
            seq_c += len(request)
        if response:
            tcp = TCP(sport=sport, dport=cport, flags="PA", seq=seq_s, ack=seq_c)
            self.send(session, down / tcp / Raw(response), False)
            seq_s += len(response)
        self.send(
            session, up / TCP(sport=cport, dport=sport, flags="FA", seq=seq_c, ack=seq_s), True
        )
        tcp = TCP(sport=sport, dport=cport, flags="FA", seq=seq_s, ack=seq_c + 1)
        self.send(session, down / tcp, False)
        tcp = TCP(sport=cport, dport=sport, flags="A", seq=seq_c + 1, ack=seq_s + 1)
        self.send(session, up / tcp, True)
        self.sessions.append(session)

    def unanswered_syn(self, client, cport, server, sport, attempts=3):
        session = ExpectedSession("tcp", client, cport, server, sport, half_open=True)
        for _ in range(attempts):
            tcp = TCP(sport=cport, dport=sport, flags="S", seq=777)
            self.send(session, self.ip(client, server) / tcp, True)
        self.sessions.append(session)

    def dns_lookup(self, client, cport, server, name: str, answer: str | None):
        protocol = "udp"
        session = ExpectedSession(protocol, client, cport, server, 53)
        query = DNS(id=cport & 0xFFFF, rd=1, qd=DNSQR(qname=name))
        self.send(session, self.ip(client, server) / UDP(sport=cport, dport=53) / query, True)
        if answer is not None:
            reply = DNS(
                id=query.id, qr=1, qd=DNSQR(qname=name), an=DNSRR(rrname=name, rdata=answer)
            )
            self.send(session, self.ip(server, client) / UDP(sport=53, dport=cport) / reply, False)
            session.complete = True
        else:
            session.half_open = True
        self.sessions.append(session)

    def ntp_exchange(self, client, server, cport=123):
        session = ExpectedSession("udp", client, cport, server, 123, complete=True)
        ntp = bytes([0x23]) + bytes(47)
        self.send(session, self.ip(client, server) / UDP(sport=cport, dport=123) / Raw(ntp), True)
        reply = bytes([0x24]) + bytes(47)
        self.send(
            session, self.ip(server, client) / UDP(sport=123, dport=cport) / Raw(reply), False, 1.5
        )
        self.sessions.append(session)

    def ping(self, client, server, count=2):
        v6 = ":" in client
        session = ExpectedSession("icmpv6" if v6 else "icmp", client, 0, server, 0, complete=True)
        for sequence in range(count):
            request = (
                ICMPv6EchoRequest(id=7, seq=sequence) if v6 else ICMP(type=8, id=7, seq=sequence)
            )
            reply = ICMPv6EchoReply(id=7, seq=sequence) if v6 else ICMP(type=0, id=7, seq=sequence)
            payload = Raw(b"microseg-ping-" + bytes(18))
            self.send(session, self.ip(client, server) / request / payload, True)
            self.send(session, self.ip(server, client) / reply / payload, False)
        self.sessions.append(session)


# The seed lab's hosts (examples/home-lab*.yaml).
LAPTOP = "172.18.6.138"  # wifi client
WEB01, WEB02, APPSERVER1 = "10.100.99.51", "10.100.99.52", "10.100.99.50"
DNS1, DNS2 = "10.100.1.6", "10.100.1.7"
UBUNTU_ARCHIVE = "91.189.91.81"  # an internet address: the servers fetch package updates


def seed_lab_traffic() -> LabTraffic:
    """The seed's web-app discovery stage, as the monitor rule on web01, web02 and appserver1
    saw it: HTTP from a wifi client to both web servers, both web servers to appserver1 on
    tcp/4567, DNS and NTP to the DNS servers, HTTP to the internet for updates; plus an
    unanswered DNS query and ssh attempt (half-open), a ping, and IPv6."""
    lab = LabTraffic()
    page = b"<h1>SUCCESS: Data retrieved from App Server (appserver1)</h1>"
    for cport, web in ((50514, WEB01), (50516, WEB02)):
        lab.tcp_conversation(LAPTOP, cport, web, 80, b"GET / HTTP/1.1\r\nHost: web\r\n\r\n", page)
    for cport, web in ((43538, WEB01), (43540, WEB02)):
        lab.tcp_conversation(web, cport, APPSERVER1, 4567, b"GET /data HTTP/1.1\r\n\r\n", page)
    for cport in (51841, 63375, 61817):  # ephemeral client ports: one `eph` summary row
        lab.dns_lookup(WEB01, cport, DNS2, "archive.ubuntu.com.", UBUNTU_ARCHIVE)
    lab.dns_lookup(APPSERVER1, 43726, DNS2, "gone.lab.", None)
    # chrony-style client port: with 123 <-> 123 and softflowd's shared flow times nothing
    # tells client from server, and the table falls back to the lower address
    lab.ntp_exchange(WEB02, DNS1, cport=38123)
    lab.tcp_conversation(
        WEB01,
        44100,
        UBUNTU_ARCHIVE,
        80,
        b"GET /ubuntu/dists/jammy/InRelease HTTP/1.1\r\n\r\n",
        b"x" * 600,
    )
    lab.unanswered_syn(LAPTOP, 55555, APPSERVER1, 22)
    lab.ping(APPSERVER1, DNS2)
    lab.tcp_conversation("2001:db8:1::10", 50010, "2001:db8:99::11", 443, b"hello", b"world" * 40)
    lab.dns_lookup("2001:db8:1::10", 53001, "2001:db8:1::6", "web01.lab.", WEB01)
    lab.ping("2001:db8:1::10", "2001:db8:99::11", count=1)
    return lab


def exported_flow_count(lab: LabTraffic) -> int:
    """Uniflow records softflowd exports: one per direction that carried packets."""
    return sum(1 + (session.rev_packets > 0) for session in lab.sessions)


def write_pcap(lab: LabTraffic, path: Path) -> Path:
    wrpcap(str(path), lab.packets)
    return path


def expected_sessions(traffic: LabTraffic) -> dict:
    """Session key -> (fwd packets, fwd bytes, rev packets, rev bytes, complete, half-open)."""
    return {
        (s.protocol, s.client, s.client_port, s.server, s.server_port): (
            s.fwd_packets,
            s.fwd_bytes,
            s.rev_packets,
            s.rev_bytes,
            int(s.complete),
            int(s.half_open),
        )
        for s in traffic.sessions
    }


def collected_sessions(table) -> dict:
    """The same mapping from a session table (pyarrow, ports as text or numbers)."""
    return {
        (r["protocol"], r["src"], int(r["sport"]), r["dst"], int(r["dport"])): (
            r["fwd_packets"],
            r["fwd_bytes"],
            r["rev_packets"],
            r["rev_bytes"],
            r["complete"],
            r["half_open"],
        )
        for r in table.to_pylist()
    }
