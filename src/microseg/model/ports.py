"""Port and protocol vocabulary shared by the model, the renderers and the evaluator.

EOS accepts well-known port keywords wherever a port number is accepted and prints the
keyword back in `show running-config` (the seed's `destination port domain` was entered as
53). The table below is the EOS keyword set for TCP and UDP ports; names valid for only one
transport are listed in that transport's table.
"""

from __future__ import annotations

# EOS port keywords valid for both TCP and UDP.
_COMMON = {
    "discard": 9,
    "echo": 7,
    "daytime": 13,
    "chargen": 19,
    "domain": 53,
    "www": 80,
    "sunrpc": 111,
    "bgp": 179,
    "ldap": 389,
    "https": 443,
    "ldaps": 636,
    "lsp-ping": 3503,
    "bfd": 3784,
    "bfd-echo": 3785,
    "micro-bfd": 6784,
}
TCP_PORT_NAMES: dict[str, int] = {
    **_COMMON,
    "ftp-data": 20,
    "ftp": 21,
    "ssh": 22,
    "telnet": 23,
    "smtp": 25,
    "time": 37,
    "tacacs": 49,
    "gopher": 70,
    "finger": 79,
    "hostname": 101,
    "pop2": 109,
    "pop3": 110,
    "ident": 113,
    "nntp": 119,
    "irc": 194,
    "exec": 512,
    "login": 513,
    "cmd": 514,
    "lpd": 515,
    "talk": 517,
    "uucp": 540,
    "klogin": 543,
    "kshell": 544,
    "pim-auto-rp": 496,
}
UDP_PORT_NAMES: dict[str, int] = {
    **_COMMON,
    "time": 37,
    "nameserver": 42,
    "tacacs": 49,
    "bootps": 67,
    "bootpc": 68,
    "tftp": 69,
    "ntp": 123,
    "netbios-ns": 137,
    "netbios-dgm": 138,
    "netbios-ss": 139,
    "snmp": 161,
    "snmptrap": 162,
    "xdmcp": 177,
    "isakmp": 500,
    "biff": 512,
    "who": 513,
    "syslog": 514,
    "talk": 517,
    "rip": 520,
    "mobile-ip": 434,
    "dhcpv6-client": 546,
    "dhcpv6-server": 547,
    "non500-isakmp": 4500,
    "pim-auto-rp": 496,
    "radius": 1812,
    "radius-acct": 1813,
    "mlag": 4432,
    "vxlan": 4789,
}

PORT_NAMES: dict[str, dict[str, int]] = {"tcp": TCP_PORT_NAMES, "udp": UDP_PORT_NAMES}

# IP protocol numbers (IANA "Assigned Internet Protocol Numbers"): the one protocol table.
ICMP, TCP, UDP, ICMPV6, SCTP = 1, 6, 17, 58, 132
# The names a policy's `protocol:` takes (any other protocol is written as its number); EOS
# (`protocol tcp`) and nftables (`meta l4proto tcp`) print these names too.
PROTOCOL_NUMBERS: dict[str, int] = {"icmp": ICMP, "tcp": TCP, "udp": UDP, "icmpv6": ICMPV6}
# Names for display (sessions, what-if, check): those, and SCTP, which flows carry.
PROTOCOL_NAMES: dict[int, str] = {
    **{number: name for name, number in PROTOCOL_NUMBERS.items()},
    SCTP: "sctp",
}


def session_protocol(text: str) -> str | None:
    """How the session table writes a protocol given as a name or number (`TCP`, `6`,
    `006` -> `tcp`; `47` -> `47`); None if it is neither."""
    word = text.strip().lower()
    if word.isascii() and word.isdigit():
        digits = word.lstrip("0") or "0"  # a number of thousands of digits is no protocol
        number = int(digits) if len(digits) <= 3 else 256
        return PROTOCOL_NAMES.get(number, str(number)) if number <= 255 else None
    return word if word in PROTOCOL_NAMES.values() else None


# Transports whose packets carry source and destination ports.
PORT_PROTOCOLS: tuple[int, ...] = (TCP, UDP, SCTP)
# The ICMP of each IP version (RFC 792, RFC 4443).
ICMP_BY_IP_VERSION: dict[int, int] = {4: ICMP, 6: ICMPV6}

# ICMP message types (RFC 792 / RFC 4443) by the names EOS uses.
ICMP_TYPE_NAMES: dict[str, int] = {
    "echo-reply": 0,
    "unreachable": 3,
    "redirect": 5,
    "echo": 8,
    "echo-request": 8,
    "router-advertisement": 9,
    "router-solicitation": 10,
    "time-exceeded": 11,
    "parameter-problem": 12,
    "timestamp-request": 13,
    "timestamp-reply": 14,
}
ICMPV6_TYPE_NAMES: dict[str, int] = {
    "unreachable": 1,
    "packet-too-big": 2,
    "time-exceeded": 3,
    "parameter-problem": 4,
    "echo-request": 128,
    "echo": 128,
    "echo-reply": 129,
    "router-solicitation": 133,
    "router-advertisement": 134,
    "neighbor-solicitation": 135,
    "neighbor-advertisement": 136,
    "redirect": 137,
}
ICMP_TYPE_NAMES_BY_PROTOCOL: dict[str, dict[str, int]] = {
    "icmp": ICMP_TYPE_NAMES,
    "icmpv6": ICMPV6_TYPE_NAMES,
}

# Stateless return traffic of an ICMP query is its reply, by IP protocol number (RFC 792:
# echo 8 -> echo-reply 0, timestamp 13 -> 14, information request 15 -> 16; RFC 950:
# address mask 17 -> 18; RFC 4443: echo-request 128 -> echo-reply 129). Other types (error
# messages) keep their type in a reverse match.
ICMP_REPLY_TYPES: dict[int, dict[int, int]] = {
    ICMP: {8: 0, 13: 14, 15: 16, 17: 18},
    ICMPV6: {128: 129},
}

SYSTEM_PORTS_END = 1024  # RFC 6335: 0-1023 are system (well-known) ports
EPHEMERAL_PORT_START = 49152  # RFC 6335 dynamic/private range; the vZTX summarises from here.
