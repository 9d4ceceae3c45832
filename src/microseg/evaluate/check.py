"""Connection check: can A reach B on a service, and which rule decides?

A connection needs its request and its reply forwarded: EOS traffic policies are stateless,
so the return traffic meets the policy on its own (the seed's ssh/curl/dig tests observe
exactly this). Traffic between two hosts of one segment never reaches the switch unless the
hosts are isolated at L2 and the SVI answers ARP for them (`ip local-proxy-arp`); then the
check says the policy is not enforced instead of claiming a verdict (the seed's "Ooops").
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, replace

from microseg.compile.intent import DeviceIntent
from microseg.compile.resolve import compile_all
from microseg.evaluate.cells import (
    field_set_intervals,
    merge_intervals,
    prefix_intervals,
    prefix_span,
)
from microseg.evaluate.engine import CompiledDevice, Decision
from microseg.evaluate.packets import icmp_type_number, port_number, protocol_number
from microseg.model import MicrosegError, PolicySet
from microseg.model.objects import Segment
from microseg.model.ports import (
    EPHEMERAL_PORT_START,
    ICMP,
    ICMP_REPLY_TYPES,
    ICMPV6,
    PORT_PROTOCOLS,
    PROTOCOL_NAMES,
)

CLIENT_PORT = EPHEMERAL_PORT_START  # the request's source port, the reply's destination port


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
    mirrors: tuple[Mirror, ...] = ()

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
            "mirrored": [mirror.as_dict() for mirror in self.mirrors],
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
    port: int | str | None,
    icmp_type: str | int | None,
) -> tuple[str, Packet, Packet]:
    """(service label, request, reply) for a connection; MicrosegError on bad input."""
    src, dst = _address(source, "--from"), _address(destination, "--to")
    if src.version != dst.version:
        raise MicrosegError(f"--from {src} and --to {dst} are of different address families")
    number = protocol_number(protocol)
    if number == ICMP and src.version == 6:
        number = ICMPV6  # ICMP between IPv6 hosts is ICMPv6 (RFC 4443)
    if number == ICMPV6 and src.version == 4:
        raise MicrosegError(
            f"--proto {protocol}: icmpv6 is ICMP for IPv6 (RFC 4443), but {src} and {dst} are "
            "IPv4 addresses; use --proto icmp"
        )
    if number in PORT_PROTOCOLS:
        if icmp_type is not None:
            raise MicrosegError(f"--icmp-type applies to icmp and icmpv6, not protocol {protocol}")
        if port is None:
            raise MicrosegError(f"--port is required for protocol {protocol}")
        name = PROTOCOL_NAMES[number]
        server_port = port_number(port, name)
        request = Packet(str(src), str(dst), number, CLIENT_PORT, server_port)
        reply = Packet(str(dst), str(src), number, server_port, CLIENT_PORT)
        return f"{name}/{server_port}", request, reply
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
    port: int | str | None = None,
    icmp_type: str | int | None = None,
    vrf: str = "default",
    device: str | None = None,
    intents: dict[str, DeviceIntent] | None = None,
    engines: Mapping[str, CompiledDevice] | None = None,
) -> ConnectionCheck:
    """Check one connection on every device with a policy for the VRF (or only `device`).

    `intents` and `engines` (each device's CompiledDevice of those intents) may be given
    when the caller keeps them: a server checking one revision many times."""
    service, request, reply = connection_packets(source, destination, protocol, port, icmp_type)
    check_vrf(policy_set, vrf)
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
        compiled = engines[intent.device] if engines is not None else CompiledDevice(intent)
        request_decisions.append(_decide(compiled, vrf, request))
        reply_decisions.append(_decide(compiled, vrf, reply))
    bypass = _bypass(policy_set, [i.device for i in selected], vrf, request)
    result = ConnectionCheck(
        vrf, service, request, reply, tuple(request_decisions), tuple(reply_decisions), bypass
    )
    return replace(result, mirrors=mirrors_of(result, intents))


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


# -- mirroring ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Mirror:
    """A deciding match that also mirrors the packet to a monitor session (EOS `mirror`
    action: the traffic is forwarded or dropped as the match says, and a copy goes over GRE
    to the monitor node, where it becomes flow records)."""

    direction: str  # request or reply
    device: str
    match: str
    session: str
    monitor_object: str
    monitor_nodes: tuple[str, ...]

    def as_dict(self) -> dict:
        return {
            "direction": self.direction,
            "device": self.device,
            "match": self.match,
            "session": self.session,
            "monitor_object": self.monitor_object,
            "monitor_nodes": list(self.monitor_nodes),
        }

    def describe(self) -> str:
        nodes = ", ".join(self.monitor_nodes) or "its monitor node"
        return (
            f"{self.direction} on {self.device}: match {self.match} mirrors to monitor session "
            f"{self.session} (monitor object {self.monitor_object}, to {nodes})"
        )


def mirrors_of(check: ConnectionCheck, intents: dict[str, DeviceIntent]) -> tuple[Mirror, ...]:
    """The mirrors the request's and the reply's deciding matches apply."""
    found = []
    for direction, decisions in (
        ("request", check.request_decisions),
        ("reply", check.reply_decisions),
    ):
        for decision in decisions:
            mirror = _mirror_of(intents.get(decision.device), decision)
            if mirror is not None:
                found.append(Mirror(direction, decision.device, *mirror))
    return tuple(found)


def _mirror_of(intent: DeviceIntent | None, decision: Decision):
    if intent is None or decision.rule is None or decision.policy is None:
        return None
    for policy in intent.policies:
        if policy.name != decision.policy:
            continue
        for match in policy.matches:
            if match.name == decision.match and match.mirror_session is not None:
                session = intent.mirror_sessions.get(match.mirror_session)
                if session is None:
                    return match.name, match.mirror_session, "", ()
                return match.name, session.name, session.monitor_object, session.monitor_nodes
    return None


# -- groups as endpoints ------------------------------------------------------------------

# A check of two groups evaluates one connection per pair of address classes; more pairs
# than this is a question for `whatif` over sessions, not for one check.
MAX_CLASS_PAIRS = 1024


@dataclass(frozen=True)
class Endpoint:
    """An address or a group given as --from / --to."""

    text: str
    group: str | None
    # per family: the address intervals (first, last) it covers
    intervals: dict[int, tuple[tuple[int, int], ...]]

    def label(self) -> str:
        return f"group {self.group}" if self.group else self.text


@dataclass(frozen=True)
class AddressClass:
    """Addresses every prefix and subnet in play treats alike: one check answers for all."""

    family: int
    intervals: tuple[tuple[int, int], ...]

    @property
    def representative(self) -> str:
        return str(ipaddress.ip_address(self.intervals[0][0]))

    def prefixes(self) -> list[str]:
        klass = ipaddress.IPv4Address if self.family == 4 else ipaddress.IPv6Address
        return [
            str(network)
            for first, last in self.intervals
            for network in ipaddress.summarize_address_range(klass(first), klass(last))
        ]


@dataclass(frozen=True)
class ClassPair:
    source: AddressClass
    destination: AddressClass
    check: ConnectionCheck


@dataclass(frozen=True)
class GroupCheck:
    """A connection between groups (or a group and an address), answered per address class."""

    source: Endpoint
    destination: Endpoint
    vrf: str
    service: str
    pairs: tuple[ClassPair, ...]

    def count(self, wanted: str) -> int:
        return sum(1 for pair in self.pairs if outcome(pair.check) == wanted)

    @property
    def result(self) -> str:
        outcomes = {outcome(pair.check) for pair in self.pairs}
        if len(outcomes) == 1:
            return f"{outcomes.pop()} for every address of both sides"
        counts = ", ".join(
            f"{self.count(o)} {o}"
            for o in ("connects", "dropped", "not enforced", "redirected")
            if self.count(o)
        )
        return f"partly: of {len(self.pairs)} address class pairs, {counts}"

    @property
    def connects(self) -> bool:
        return all(outcome(pair.check) == "connects" for pair in self.pairs)

    def as_dict(self) -> dict:
        return {
            "source": _endpoint_dict(self.source),
            "destination": _endpoint_dict(self.destination),
            "vrf": self.vrf,
            "service": self.service,
            "result": self.result,
            "connects": self.connects,
            "pairs": [
                {
                    "source": pair.source.prefixes(),
                    "destination": pair.destination.prefixes(),
                    "outcome": outcome(pair.check),
                    "check": pair.check.as_dict(),
                }
                for pair in self.pairs
            ],
        }


def _endpoint_dict(endpoint: Endpoint) -> dict:
    return {"text": endpoint.text, "group": endpoint.group}


def outcome(check: ConnectionCheck) -> str:
    if check.bypass is not None:
        return "not enforced"
    if check.redirected:
        return "redirected"
    return "connects" if check.connects else "dropped"


def is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip())
    except ValueError:
        return False
    return True


def check_vrf(policy_set: PolicySet, vrf: str) -> None:
    """A VRF no security domain has is a typo, not traffic no policy sees: `check --vrf
    prod` on a fabric whose VRF is `PROD` would otherwise answer "connects"."""
    known = {name for domain in policy_set.domains for name in domain.vrfs}
    known |= {s.vrf for device in policy_set.devices for s in device.segments}
    if known and vrf not in known:
        raise MicrosegError(
            f"--vrf {vrf!r} is a VRF of no security domain (VRFs: {', '.join(sorted(known))})"
        )


def check_groups(
    policy_set: PolicySet,
    source: str,
    destination: str,
    protocol: str | int,
    port: int | str | None = None,
    icmp_type: str | int | None = None,
    vrf: str = "default",
    device: str | None = None,
) -> GroupCheck:
    """Check a connection whose ends are groups (or one group and one address).

    Each side is cut into address classes: sets of addresses that every prefix field-set
    and segment subnet on the devices treats alike (in all of them or out of all of them),
    so one connection check per pair of classes answers for every pair of addresses."""
    check_vrf(policy_set, vrf)
    intents = compile_all(policy_set)
    ends = (
        _resolve_endpoint(policy_set, source, "--from"),
        _resolve_endpoint(policy_set, destination, "--to"),
    )
    families = sorted(set(ends[0].intervals) & set(ends[1].intervals))
    if not families:
        raise MicrosegError(
            f"--from {ends[0].label()} and --to {ends[1].label()} share no address family"
        )
    address_sets = _address_sets(policy_set, intents)
    pairs: list[ClassPair] = []
    service = ""
    for family in families:
        source_classes = _classes(ends[0].intervals[family], address_sets[family], family)
        destination_classes = _classes(ends[1].intervals[family], address_sets[family], family)
        if len(source_classes) * len(destination_classes) + len(pairs) > MAX_CLASS_PAIRS:
            raise MicrosegError(
                f"--from {ends[0].label()} and --to {ends[1].label()} make more than "
                f"{MAX_CLASS_PAIRS} pairs of address classes; check narrower groups or "
                "addresses, or replay sessions with `microseg whatif`"
            )
        for source_class in source_classes:
            for destination_class in destination_classes:
                check = check_connection(
                    policy_set,
                    source_class.representative,
                    destination_class.representative,
                    protocol,
                    port,
                    icmp_type,
                    vrf,
                    device,
                    intents,
                )
                service = check.service
                pairs.append(ClassPair(source_class, destination_class, check))
    return GroupCheck(ends[0], ends[1], vrf, service, tuple(pairs))


def _resolve_endpoint(policy_set: PolicySet, text: str, option: str) -> Endpoint:
    if is_address(text):
        address = ipaddress.ip_address(text.strip())
        return Endpoint(text, None, {address.version: ((int(address), int(address)),)})
    names = {group.name for group in policy_set.groups}
    if text not in names:
        known = ", ".join(sorted(names)) or "none"
        raise MicrosegError(
            f"{option} {text!r} is neither an IPv4 or IPv6 address nor a group (groups: {known})"
        )
    group = policy_set.group(text)
    intervals = {}
    for family in (4, 6):
        remaining = prefix_intervals(group.prefixes_of(family), group.except_prefixes_of(family))
        if remaining:
            intervals[family] = tuple(remaining)
    if not intervals:
        raise MicrosegError(f"{option} group {text!r} holds no addresses")
    return Endpoint(text, text, intervals)


def _address_sets(
    policy_set: PolicySet, intents: dict[str, DeviceIntent]
) -> dict[int, list[list[tuple[int, int]]]]:
    """Every address set a verdict can depend on, as intervals: each prefix field-set on the
    devices (its prefixes minus its except-prefixes) and each segment subnet (intra-subnet
    traffic may bypass the switch)."""
    found: dict[int, list[list[tuple[int, int]]]] = {4: [], 6: []}
    for intent in intents.values():
        for field_set in intent.prefix_field_sets.values():
            found[4 if field_set.family == "ipv4" else 6].append(field_set_intervals(field_set))
    for policy_device in policy_set.devices:
        for segment in policy_device.segments:
            for subnet in segment.subnets:
                found[subnet.version].append([prefix_span(subnet)])
    return found


def _classes(
    intervals: tuple[tuple[int, int], ...], sets: list[list[tuple[int, int]]], family: int
) -> list[AddressClass]:
    """`intervals` cut wherever an address set starts or ends, then grouped by which of the
    sets hold them: addresses in the same sets meet the same matches."""
    cuts = sorted(
        {first for found in sets for first, _ in found}
        | {last + 1 for found in sets for _, last in found}
    )
    pieces = []
    for first, last in intervals:
        start = first
        for cut in cuts:
            if start < cut <= last:
                pieces.append((start, cut - 1))
                start = cut
        pieces.append((start, last))
    by_membership: dict[tuple[bool, ...], list[tuple[int, int]]] = {}
    for piece in pieces:
        membership = tuple(
            any(first <= piece[0] and piece[1] <= last for first, last in found) for found in sets
        )
        by_membership.setdefault(membership, []).append(piece)
    return [AddressClass(family, tuple(merge_intervals(found))) for found in by_membership.values()]
