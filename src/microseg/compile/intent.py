"""DeviceIntent: a policy resolved for one device, target-neutral, typed and immutable.

Every renderer (EOS, nftables), the evaluator and the linter read this one structure, so
what we check is exactly what we ship. It holds no layout: names, prefixes, ports, order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from microseg.model.objects import (
    DecapType,
    DefaultAction,
    IPAddress,
    IPNetwork,
    PortRange,
    RateLimit,
)

Family = Literal["ipv4", "ipv6"]
Verdict = Literal["forward", "drop", "redirect"]


@dataclass(frozen=True, slots=True)
class PrefixFieldSet:
    """`field-set ipv4 prefix NAME`: one group's prefixes of one address family."""

    name: str
    family: Family
    prefixes: tuple[IPNetwork, ...]
    except_prefixes: tuple[IPNetwork, ...] = ()


@dataclass(frozen=True, slots=True)
class ServiceFieldSet:
    """`field-set service NAME`: protocol plus source/destination ports (empty = all).

    The `-reverse` field-set of a bidirectional rule has the ports swapped."""

    name: str
    protocol: int | None  # IP protocol number; None = any protocol
    source_ports: tuple[PortRange, ...] = ()
    destination_ports: tuple[PortRange, ...] = ()
    icmp_types: tuple[int, ...] = ()  # empty = every type
    # The ports as the policy wrote them (`domain`, 53), for renderers that print names.
    source_port_names: tuple[int | str, ...] = ()
    destination_port_names: tuple[int | str, ...] = ()


@dataclass(frozen=True)
class MirrorSession:
    """Where a monitored match mirrors to (GRE to the monitor node)."""

    name: str  # EOS monitor session name, e.g. `andreas-vztx-ALL`
    monitor_object: str
    tunnel_source_interface: str
    tunnel_destination: IPAddress
    rate_limit: RateLimit
    # The address of `tunnel_source_interface` on this device (its Loopback0): EOS takes an
    # address, not an interface, in `destination tunnel mode gre source A destination B`.
    tunnel_source: IPAddress | None = None
    monitor_nodes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Match:
    """One ordered match of a traffic policy. `reverse` matches carry `-reverse` names."""

    name: str  # `allow_all_DNS` or `allow_all_DNS-reverse`
    rule: str  # the rule it comes from
    reverse: bool
    family: Family
    comment: str  # the rule description, rendered as `!! comment`
    source_field_sets: tuple[str, ...] = ()  # empty = any source
    destination_field_sets: tuple[str, ...] = ()  # empty = any destination
    service_field_sets: tuple[str, ...] = ()  # empty = any service
    action: Verdict = "forward"
    redirect_next_hops: tuple[IPAddress, ...] = ()
    mirror_session: str | None = None
    decap_type: DecapType = "allow-all"


@dataclass(frozen=True)
class PolicyIntent:
    """One traffic policy bound on a device to a VRF (`ALL` = every VRF)."""

    name: str
    policy_id: int
    description: str
    vrf: str
    matches: tuple[Match, ...]
    # The verdict of a packet no match decides (EOS: the `ipv4-all-default` /
    # `ipv6-all-default` matches' actions; nftables: the policy chain's last rule).
    default_action: DefaultAction = "forward"
    default_log: bool = False  # log what the default drops


@dataclass(frozen=True)
class DeviceIntent:
    """Everything one device enforces, resolved from the PolicySet."""

    device: str
    platform: str  # the device's target (a name model.platforms knows)
    policies: tuple[PolicyIntent, ...]
    prefix_field_sets: dict[tuple[Family, str], PrefixFieldSet] = field(default_factory=dict)
    service_field_sets: dict[str, ServiceFieldSet] = field(default_factory=dict)
    mirror_sessions: dict[str, MirrorSession] = field(default_factory=dict)
    # VRF -> the device's segments (interfaces) in it, for targets that see interfaces
    # rather than VRFs (nftables keys a packet's VRF on its ingress interface).
    vrf_interfaces: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def policy_for_vrf(self, vrf: str) -> PolicyIntent | None:
        """The policy a packet in `vrf` meets: a VRF's own binding wins over `ALL`."""
        own = [p for p in self.policies if p.vrf == vrf]
        if own:
            return own[0]
        return next((p for p in self.policies if p.vrf == "ALL"), None)
