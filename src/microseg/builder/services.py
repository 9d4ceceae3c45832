"""Who is the server of a session, and which Service describes what it offers.

Server side, first evidence that applies (vectorised over all sessions):

* `tcp-handshake`: a TCP session the collector saw complete, or whose reply carried SYN+ACK;
  the side that answered the SYN is the destination (the session table keeps the opener as
  `src`);
* `ephemeral-port`: one side's port is `eph` or in the RFC 6335 dynamic range (>= 49152)
  and the other's is not: the other side is the server;
* `well-known-port`: one port is below 1024 (RFC 6335 system ports) and the other is not;
* `lower-port`: otherwise the lower port;
* `fan-in`: equal ports (NTP symmetric 123 <-> 123): the side that more distinct peers talk
  to on that port serves (many clients, one NTP server);
* `direction`: otherwise, and for port-less protocols (ICMP echo: the replier), the
  session's own direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from microseg.flows.session_columns import EPHEMERAL, SessionColumns, icmp_types
from microseg.model import PolicySet, Service
from microseg.model.ports import (
    EPHEMERAL_PORT_START,
    ICMP,
    ICMP_TYPE_NAMES,
    ICMPV6,
    PROTOCOL_NAMES,
    SYSTEM_PORTS_END,
    TCP,
    UDP,
)

EVIDENCE = (
    "tcp-handshake",
    "ephemeral-port",
    "well-known-port",
    "lower-port",
    "fan-in",
    "direction",
)

# Well-known names for proposed services (IANA service names, upper-cased as people write them).
WELL_KNOWN: dict[tuple[int, int], str] = {
    (TCP, 20): "FTP-DATA",
    (TCP, 21): "FTP",
    (TCP, 22): "SSH",
    (TCP, 23): "TELNET",
    (TCP, 25): "SMTP",
    (UDP, 53): "DNS",
    (TCP, 53): "DNS-TCP",
    (UDP, 67): "DHCP",
    (UDP, 69): "TFTP",
    (TCP, 80): "HTTP",
    (TCP, 88): "KERBEROS",
    (UDP, 88): "KERBEROS-UDP",
    (TCP, 110): "POP3",
    (UDP, 123): "NTP",
    (TCP, 135): "MSRPC",
    (TCP, 143): "IMAP",
    (UDP, 161): "SNMP",
    (UDP, 162): "SNMP-TRAP",
    (TCP, 179): "BGP",
    (TCP, 389): "LDAP",
    (TCP, 443): "HTTPS",
    (UDP, 443): "QUIC",
    (TCP, 445): "SMB",
    (UDP, 514): "SYSLOG",
    (TCP, 636): "LDAPS",
    (TCP, 993): "IMAPS",
    (TCP, 1433): "MSSQL",
    (UDP, 1812): "RADIUS",
    (TCP, 2049): "NFS",
    (TCP, 3306): "MYSQL",
    (TCP, 3389): "RDP",
    (TCP, 5432): "POSTGRESQL",
    (TCP, 6379): "REDIS",
    (TCP, 8080): "HTTP-ALT",
    (TCP, 8443): "HTTPS-ALT",
    (TCP, 9200): "ELASTICSEARCH",
}
_ICMP_TYPES = {number: name for name, number in sorted(ICMP_TYPE_NAMES.items(), reverse=True)}


SYN, RST, ACK = 0x02, 0x04, 0x10  # TCP header flag bits (RFC 9293)


def syn_acknowledged(sessions: SessionColumns) -> np.ndarray:
    """The server side sent SYN+ACK: it answered the client's SYN (RFC 9293 handshake)."""
    return (sessions.reply_tcp_flags & (SYN | ACK)) == (SYN | ACK)


@dataclass(frozen=True)
class ServerSide:
    """Per session: the client and server address indices, the server port, the evidence."""

    client: np.ndarray
    server: np.ndarray
    client_port: np.ndarray
    server_port: np.ndarray  # for ICMP: the ICMP type of the client's message
    evidence: np.ndarray  # int8 index into EVIDENCE


def server_side(sessions: SessionColumns) -> ServerSide:
    sport, dport, protocol = sessions.sport, sessions.dport, sessions.protocol
    has_ports = (protocol == TCP) | (protocol == UDP)
    handshake = (protocol == TCP) & ((sessions.complete > 0) | syn_acknowledged(sessions))
    src_ephemeral = (sport == EPHEMERAL) | (sport >= EPHEMERAL_PORT_START)
    dst_ephemeral = (dport == EPHEMERAL) | (dport >= EPHEMERAL_PORT_START)
    src_system = (sport >= 0) & (sport < SYSTEM_PORTS_END)
    dst_system = (dport >= 0) & (dport < SYSTEM_PORTS_END)
    by_ephemeral = has_ports & (src_ephemeral != dst_ephemeral)
    by_system = has_ports & (src_system != dst_system)
    by_lower = has_ports & (sport != dport)
    src_peers, dst_peers = _peers_on_same_port(sessions, has_ports & (sport == dport))
    by_fan_in = src_peers != dst_peers
    conditions = [handshake, by_ephemeral, by_system, by_lower, by_fan_in]
    evidence = np.select(conditions, [0, 1, 2, 3, 4], default=5).astype(np.int8)
    # Which side serves under each rule: True = src is the server.
    src_serves = np.select(
        conditions,
        [False, dst_ephemeral, src_system, sport < dport, src_peers > dst_peers],
        default=False,
    )
    client = np.where(src_serves, sessions.dst, sessions.src)
    server = np.where(src_serves, sessions.src, sessions.dst)
    client_port = np.where(src_serves, dport, sport)
    server_port = np.where(src_serves, sport, dport)
    icmp = (protocol == ICMP) | (protocol == ICMPV6)
    icmp_type = icmp_types(protocol, dport)
    server_port = np.where(icmp, icmp_type, np.where(has_ports, server_port, 0))
    return ServerSide(client, server, client_port, server_port.astype(np.int32), evidence)


def _peers_on_same_port(
    sessions: SessionColumns, equal: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For sessions with equal ports: how many distinct peers each end has on that
    (protocol, port) among those sessions; zeros elsewhere."""
    src_peers = np.zeros(len(sessions), dtype=np.int64)
    dst_peers = np.zeros(len(sessions), dtype=np.int64)
    rows = np.flatnonzero(equal)
    if not len(rows):
        return src_peers, dst_peers
    addresses = len(sessions.addresses)
    service_key = sessions.protocol[rows].astype(np.int64) * 65536 + sessions.dport[rows]
    service = np.unique(service_key, return_inverse=True)[1].reshape(-1).astype(np.int64)
    src, dst = sessions.src[rows].astype(np.int64), sessions.dst[rows].astype(np.int64)
    # (end, service) keys, each with the peer it was seen with, both orientations.
    ends = np.concatenate([service * addresses + src, service * addresses + dst])
    peers = np.concatenate([dst, src])
    pairs = np.unique(ends * addresses + peers)
    end_keys, peer_counts = np.unique(pairs // addresses, return_counts=True)
    src_peers[rows] = peer_counts[np.searchsorted(end_keys, service * addresses + src)]
    dst_peers[rows] = peer_counts[np.searchsorted(end_keys, service * addresses + dst)]
    return src_peers, dst_peers


@dataclass(frozen=True)
class ServiceChoice:
    """The service a (protocol, server port) maps to: an existing one or a proposal."""

    name: str
    protocol: int
    port: int
    existing: bool

    @property
    def proposed(self) -> Service | None:
        if self.existing:
            return None
        return proposed_service(self.protocol, self.port).model_copy(update={"name": self.name})


def choose_services(
    keys: list[tuple[int, int]], policy_set: PolicySet, taken: set[str]
) -> list[ServiceChoice]:
    """Per (protocol, port): reuse an existing Service that matches exactly this protocol
    and port (any source port), so the rule is no broader than the evidence; else propose
    one (named by `proposed_name`, made unique against `taken`)."""
    exact: dict[tuple[int, int], str] = {}
    for service in sorted(policy_set.services, key=lambda s: s.name.encode(), reverse=True):
        key = _exact_key(service)
        if key is not None:
            exact[key] = service.name  # the first name in byte order wins
    choices = []
    for protocol, port in keys:
        if (protocol, port) in exact:
            choices.append(ServiceChoice(exact[(protocol, port)], protocol, port, True))
            continue
        base = proposed_name(protocol, port)
        name, number = base, 1
        while name in taken:
            number += 1
            name = f"{base}-{number}"
        taken.add(name)
        choices.append(ServiceChoice(name, protocol, port, False))
    return choices


def _exact_key(service: Service) -> tuple[int, int] | None:
    """(protocol, port) when the service is exactly one port (or ICMP type), any source."""
    protocol = service.protocol_number
    if protocol is None or service.source_ranges:
        return None
    if protocol in (TCP, UDP):
        ranges = service.destination_ranges
        if len(ranges) == 1 and ranges[0].low == ranges[0].high:
            return (protocol, ranges[0].low)
        return None
    if protocol in (ICMP, ICMPV6):
        types = service.icmp_type_numbers
        return (protocol, types[0]) if len(types) == 1 else None
    return (protocol, 0)


def proposed_name(protocol: int, port: int) -> str:
    """`DNS` for udp/53, `tcp-4567` for an unnamed port, `icmp-echo`, `proto-47`..."""
    if protocol in (TCP, UDP):
        return WELL_KNOWN.get((protocol, port), f"{PROTOCOL_NAMES[protocol]}-{port}")
    if protocol == ICMP:
        return f"icmp-{_ICMP_TYPES.get(port, str(port))}"
    if protocol == ICMPV6:
        return f"icmpv6-{port}"
    return f"proto-{protocol}"


def proposed_service(protocol: int, port: int) -> Service:
    """The Service a proposal describes: exactly this protocol and port (or ICMP type)."""
    name = proposed_name(protocol, port)
    description = "proposed by the policy builder"
    if protocol in (TCP, UDP):
        transport: Literal["tcp", "udp"] = "tcp" if protocol == TCP else "udp"
        return Service(
            name=name, description=description, protocol=transport, destination_ports=(port,)
        )
    if protocol in (ICMP, ICMPV6):
        icmp: Literal["icmp", "icmpv6"] = "icmp" if protocol == ICMP else "icmpv6"
        return Service(name=name, description=description, protocol=icmp, icmp_types=(port,))
    return Service(name=name, description=description, protocol=protocol)
