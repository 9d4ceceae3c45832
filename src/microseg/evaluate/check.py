"""Connection check: can A reach B on a service, and which rule decides?

A connection needs its request and its reply forwarded: EOS traffic policies are stateless,
so the return traffic meets the policy on its own (the seed's ssh/curl/dig tests observe
exactly this). Traffic between two hosts of one segment never reaches the switch unless the
hosts are isolated at L2 and the SVI answers ARP for them (`ip local-proxy-arp`); then the
check says the policy is not enforced instead of claiming a verdict (the seed's "Ooops").
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from microseg.compile.intent import DeviceIntent
from microseg.compile.resolve import compile_all
from microseg.evaluate.engine import CompiledDevice, Decision
from microseg.evaluate.packets import icmp_type_number, protocol_number
from microseg.model import MicrosegError, PolicySet
from microseg.model.objects import Segment
from microseg.model.ports import EPHEMERAL_PORT_START, ICMP_REPLY_TYPES

CLIENT_PORT = EPHEMERAL_PORT_START  # the request's source port, the reply's destination port
PORT_PROTOCOLS = (6, 17, 132)


@dataclass(frozen=True)
class Packet:
    """One direction of a connection."""

    src: str
    dst: str
    protocol: int
    sport: int = 0
    dport: int = 0
    icmp_type: int | None = None

    def describe(self) -> str:
        if self.protocol in PORT_PROTOCOLS:
            return f"{_endpoint(self.src, self.sport)} -> {_endpoint(self.dst, self.dport)}"
        suffix = f" type {self.icmp_type}" if self.icmp_type is not None else ""
        return f"{self.src} -> {self.dst}{suffix}"


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass(frozen=True)
class Bypass:
    """Both ends in one segment that does not hairpin through the switch."""

    device: str
    segment: Segment

    def explanation(self) -> str:
        segment = self.segment
        missing = []
        if not segment.hosts_isolated:
            missing.append("the hosts are not isolated at L2")
        if not segment.local_proxy_arp:
            missing.append("the SVI has no `ip local-proxy-arp`")
        return (
            f"both ends are in segment {segment.name} on {self.device} and "
            + " and ".join(missing)
            + ", so the traffic stays on the host bridge and never reaches the switch"
        )

    def fix(self) -> str:
        interface = f"Vlan{self.segment.vlan}" if self.segment.vlan else self.segment.name
        return (
            "isolate the hosts' bridge ports (bridge port isolation, e.g. Proxmox SDN "
            f"'Isolate Ports', or a private VLAN) and configure `ip local-proxy-arp` on "
            f"interface {interface}, so intra-subnet traffic hairpins through the switch "
            "(then set hosts_isolated and local_proxy_arp on the segment)"
        )


@dataclass(frozen=True)
class ConnectionCheck:
    """Request and reply decisions on every device that sees the traffic."""

    vrf: str
    service: str
    request: Packet
    reply: Packet
    request_decisions: tuple[Decision, ...]
    reply_decisions: tuple[Decision, ...]
    bypass: Bypass | None

    @property
    def devices(self) -> tuple[str, ...]:
        return tuple(d.device for d in self.request_decisions)

    @property
    def request_forwarded(self) -> bool:
        return all(d.verdict == "forward" for d in self.request_decisions)

    @property
    def reply_forwarded(self) -> bool:
        return all(d.verdict == "forward" for d in self.reply_decisions)

    @property
    def policy_allows(self) -> bool:
        """What the policy would do if the switch saw the traffic."""
        return self.request_forwarded and self.reply_forwarded

    @property
    def enforced(self) -> bool:
        return self.bypass is None and bool(self.request_decisions)

    @property
    def connects(self) -> bool:
        return self.policy_allows or not self.enforced

    @property
    def redirected(self) -> bool:
        """Nothing drops it, but a device sends it to a redirect target (an external
        firewall), which then decides: the switch policy alone cannot say it connects."""
        verdicts = {d.verdict for d in (*self.request_decisions, *self.reply_decisions)}
        return "redirect" in verdicts and "drop" not in verdicts

    @property
    def result(self) -> str:
        if self.bypass is not None:
            return "not enforced — stays on the host bridge"
        if not self.request_decisions:
            return f"connects (no device has a traffic policy for VRF {self.vrf})"
        if self.redirected:
            return "redirected — the redirect target (firewall) decides"
        return "connects" if self.connects else "dropped"

    def deciding(self, decisions: tuple[Decision, ...]) -> Decision | None:
        """The decision that settles a direction: the first device that does not forward."""
        return next((d for d in decisions if d.verdict != "forward"), None) or next(
            iter(decisions), None
        )

    @property
    def blocking(self) -> Decision | None:
        """The decision that stops the connection (request first), if one does."""
        for decisions in (self.request_decisions, self.reply_decisions):
            decision = self.deciding(decisions)
            if decision is not None and decision.verdict != "forward":
                return decision
        return None

    def as_dict(self) -> dict:
        def direction(packet: Packet, decisions: tuple[Decision, ...]) -> dict:
            deciding = self.deciding(decisions)
            return {
                "packet": packet.__dict__,
                **(deciding.as_dict() if deciding else _no_decision()),
                "devices": [d.as_dict() for d in decisions],
            }

        blocking = self.blocking
        return {
            "vrf": self.vrf,
            "service": self.service,
            "connects": self.connects,
            "enforced": self.enforced,
            "redirected": self.redirected,
            "result": self.result,
            "policy_allows": self.policy_allows,
            "blocked_by": blocking.as_dict() if blocking else None,
            "request": direction(self.request, self.request_decisions),
            "reply": direction(self.reply, self.reply_decisions),
            "bypass": None
            if self.bypass is None
            else {
                "device": self.bypass.device,
                "segment": self.bypass.segment.name,
                "explanation": self.bypass.explanation(),
                "fix": self.bypass.fix(),
            },
        }


def _no_decision() -> dict:
    return {
        "verdict": "forward",
        "device": None,
        "policy": None,
        "rule": None,
        "match": None,
        "reverse": False,
    }


def connection_packets(
    source: str,
    destination: str,
    protocol: str | int,
    port: int | None,
    icmp_type: str | int | None,
) -> tuple[str, Packet, Packet]:
    """(service label, request, reply) for a connection; MicrosegError on bad input."""
    src, dst = _address(source, "--from"), _address(destination, "--to")
    if src.version != dst.version:
        raise MicrosegError(f"--from {src} and --to {dst} are of different address families")
    number = protocol_number(protocol)
    if number == 1 and src.version == 6:
        number = 58  # ICMP between IPv6 hosts is ICMPv6 (RFC 4443)
    if number == 58 and src.version == 4:
        raise MicrosegError(
            f"--proto {protocol}: icmpv6 is ICMP for IPv6 (RFC 4443), but {src} and {dst} are "
            "IPv4 addresses; use --proto icmp"
        )
    if number in PORT_PROTOCOLS:
        if icmp_type is not None:
            raise MicrosegError(f"--icmp-type applies to icmp and icmpv6, not protocol {protocol}")
        if port is None:
            raise MicrosegError(f"--port is required for protocol {protocol}")
        if not 0 <= port <= 65535:
            raise MicrosegError(f"--port {port} is not 0-65535")
        name = {6: "tcp", 17: "udp", 132: "sctp"}[number]
        request = Packet(str(src), str(dst), number, CLIENT_PORT, port)
        reply = Packet(str(dst), str(src), number, port, CLIENT_PORT)
        return f"{name}/{port}", request, reply
    if port is not None:
        raise MicrosegError(f"--port applies to tcp and udp, not protocol {protocol}")
    if number in ICMP_REPLY_TYPES:
        family_name = "icmp" if number == 1 else "icmpv6"
        requested = icmp_type_number("echo" if icmp_type is None else icmp_type, family_name)
        answer = ICMP_REPLY_TYPES[number].get(requested, requested)
        request = Packet(str(src), str(dst), number, icmp_type=requested)
        reply = Packet(str(dst), str(src), number, icmp_type=answer)
        label = "echo" if icmp_type is None else str(icmp_type)
        return f"{family_name} {label}", request, reply
    if icmp_type is not None:
        raise MicrosegError(f"--icmp-type applies to icmp, not protocol {protocol}")
    return (
        f"protocol {number}",
        Packet(str(src), str(dst), number),
        Packet(str(dst), str(src), number),
    )


def _address(text: str, option: str):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        raise MicrosegError(f"{option} {text!r} is not an IPv4 or IPv6 address") from None


def check_connection(
    policy_set: PolicySet,
    source: str,
    destination: str,
    protocol: str | int,
    port: int | None = None,
    icmp_type: str | int | None = None,
    vrf: str = "default",
    device: str | None = None,
    intents: dict[str, DeviceIntent] | None = None,
) -> ConnectionCheck:
    """Check one connection on every device with a policy for the VRF (or only `device`)."""
    service, request, reply = connection_packets(source, destination, protocol, port, icmp_type)
    intents = compile_all(policy_set) if intents is None else intents
    if device is not None:
        if device not in intents:
            known = ", ".join(intents) or "none"
            raise MicrosegError(
                f"device {device!r} enforces no policy (devices in a domain: {known})"
            )
        selected = [intents[device]]
    else:
        selected = [i for i in intents.values() if i.policy_for_vrf(vrf) is not None]
    request_decisions, reply_decisions = [], []
    for intent in selected:
        compiled = CompiledDevice(intent)
        request_decisions.append(_decide(compiled, vrf, request))
        reply_decisions.append(_decide(compiled, vrf, reply))
    bypass = _bypass(policy_set, [i.device for i in selected], vrf, request)
    return ConnectionCheck(
        vrf, service, request, reply, tuple(request_decisions), tuple(reply_decisions), bypass
    )


def _decide(compiled: CompiledDevice, vrf: str, packet: Packet) -> Decision:
    return compiled.evaluate_packet(
        vrf=vrf,
        protocol=packet.protocol,
        src=packet.src,
        dst=packet.dst,
        sport=packet.sport,
        dport=packet.dport,
        icmp_type=packet.icmp_type,
    )


def _bypass(policy_set: PolicySet, devices: list[str], vrf: str, packet: Packet) -> Bypass | None:
    source, destination = ipaddress.ip_address(packet.src), ipaddress.ip_address(packet.dst)
    for name in devices:
        for segment in policy_set.device(name).segments:
            if segment.vrf != vrf or segment.enforces_intra_subnet:
                continue
            if shared_subnet(segment, source, destination) is not None:
                return Bypass(name, segment)
    return None


def shared_subnet(segment: Segment, source, destination):
    """The segment's subnet holding both addresses, or None. Hosts of two different subnets
    of one segment reach each other through their gateway, the SVI: that traffic is routed
    by the switch and meets the policy."""
    for subnet in segment.subnets:
        if source.version == subnet.version and source in subnet and destination in subnet:
            return subnet
    return None
